// Runs the cellguard firmware under the MicroPython WebAssembly port, driven by
// the Python simulator over stdin/stdout, one line per request and per reply:
//   B <board json hex> <unique id hex>   boot the firmware      -> "ok" | "error <hex>"
//   S <dt ms> <codes hex> <rx hex|->     one control step       -> "<tx hex|-> <flags>" | "error <hex>"
//     (flags: the OUT_* bits of hal_sim and the balancing mask above them (flags >> 4),
//     in decimal, passed through as the firmware gives them)
//   X <python source hex>                run code (tests, bench) -> "ok <stdout hex>" | "error <hex>"
// argv: <path of micropython.mjs> <firmware folder>
import fs from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";

const [mjsPath, firmwareDir] = process.argv.slice(2);
const { loadMicroPython } = await import(pathToFileURL(mjsPath).href);

let captured = [];
const mp = await loadMicroPython({
  stdout: (line) => captured.push(line),
  stderr: (line) => process.stderr.write(line + "\n"),
});

// Copy the firmware tree into the in-memory filesystem under /fw.
function copyTree(src, dst) {
  mp.FS.mkdir(dst);
  for (const entry of fs.readdirSync(src, { withFileTypes: true })) {
    if (entry.name === "__pycache__") continue;
    const from = path.join(src, entry.name);
    const to = dst + "/" + entry.name;
    if (entry.isDirectory()) copyTree(from, to);
    else if (entry.name.endsWith(".py") || entry.name.endsWith(".json")) {
      mp.FS.writeFile(to, fs.readFileSync(from));
    }
  }
}
copyTree(firmwareDir, "/fw");
mp.FS.mkdir("/flash"); // the simulated board's flash: survives its resets
mp.runPython("import sys\nsys.path.insert(0, '/fw')");

const hex = (s) => Buffer.from(s, "utf8").toString("hex");
const unhex = (h) => Buffer.from(h, "hex").toString("utf8");
let step = null;

function handle(line) {
  const parts = line.split(" ");
  try {
    switch (parts[0]) {
      case "B": {
        mp.runPython(
          "from cellguard_fw.hal_sim import SimBoard\n" +
          "from binascii import unhexlify\n" +
          `_sim = SimBoard(unhexlify('${parts[1]}').decode(), unhexlify('${parts[2]}'), '/flash')\n` +
          "_step = _sim.step_hex\n"
        );
        step = mp.globals.get("_step");
        return "ok";
      }
      case "S": {
        const reply = step(parseInt(parts[1], 10), parts[2], parts[3] === "-" ? "" : parts[3]);
        const [tx, flags] = reply.split(" ");
        return (tx.length ? tx : "-") + " " + flags;
      }
      case "X": {
        // Code that lets an exception escape a heap-locked region at top level
        // wedges the VM; the Python side then kills this process after its timeout.
        captured = [];
        mp.runPython(unhex(parts[1]));
        return "ok " + hex(captured.join("\n"));
      }
      default:
        return "error " + hex("unknown request " + parts[0]);
    }
  } catch (err) {
    return "error " + hex(String(err && err.message ? err.message : err));
  }
}

let pending = "";
process.stdin.setEncoding("latin1");
process.stdin.on("data", (chunk) => {
  pending += chunk;
  const replies = [];
  let nl;
  while ((nl = pending.indexOf("\n")) >= 0) {
    replies.push(handle(pending.slice(0, nl)));
    pending = pending.slice(nl + 1);
  }
  if (replies.length) process.stdout.write(replies.join("\n") + "\n");
});
process.stdin.on("end", () => process.exit(0));
