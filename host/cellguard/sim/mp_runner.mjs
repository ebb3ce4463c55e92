// Runs the cellguard firmware under the MicroPython WebAssembly port, driven by
// the Python simulator over stdin/stdout, one line per request and per reply:
//   B <board json hex> <unique id hex> <1|0: an I2C bus>  boot -> "ok" | "error <hex>"
//   S <dt ms> <codes hex> <rx hex|->     one control step       -> "<tx hex|-> <flags>" | "error <hex>"
//     (flags: the OUT_* bits of hal_sim and the balancing mask above them (flags >> 4),
//     in decimal, passed through as the firmware gives them)
//   X <python source hex>                run code (tests, bench) -> "ok <stdout hex>" | "error <hex>"
//   T <python source hex>                the same, timed -> "ok <ns> <stdout hex>" | "error <hex>":
//     ns the call into MicroPython took (process.hrtime), what runs when it returns
//     included: this port collects garbage only then (a gc.collect() inside marks one)
// During a step the firmware may talk to chips on the board's I2C bus (a battery-monitor
// AFE): each transfer goes out as a line of its own, "I <ops>" (ops as i2c.py's
// I2cBus.transfer takes them: S, W<hex>, R<n>, P), and the step waits for the answer,
// "i <results>", before it goes on: a transfer is synchronous, as on a board.
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

// stdin is read synchronously (an I2C transfer waits for its answer inside a step), so
// never through process.stdin, whose handle would make fd 0 non-blocking.
const inBuf = Buffer.alloc(65536);
let pending = "";
const sleeper = new Int32Array(new SharedArrayBuffer(4));
function readLine() {
  for (;;) {
    const nl = pending.indexOf("\n");
    if (nl >= 0) {
      const line = pending.slice(0, nl);
      pending = pending.slice(nl + 1);
      return line;
    }
    let n;
    try {
      n = fs.readSync(0, inBuf, 0, inBuf.length, null);
    } catch (err) {
      if (err.code === "EAGAIN") { Atomics.wait(sleeper, 0, 0, 1); continue; }
      if (err.code === "EOF") return null;
      throw err;
    }
    if (n === 0) return null;
    pending += inBuf.toString("latin1", 0, n);
  }
}
function writeLine(text) {
  const data = Buffer.from(text + "\n", "latin1");
  let at = 0;
  while (at < data.length) {
    try {
      at += fs.writeSync(1, data, at, data.length - at);
    } catch (err) {
      if (err.code !== "EAGAIN") throw err;
      Atomics.wait(sleeper, 0, 0, 1);
    }
  }
}
mp.registerJsModule("simbus", {
  xfer: (ops) => {
    writeLine("I " + ops);
    const line = readLine();
    if (line === null) process.exit(0); // the simulator is gone
    return line.startsWith("i ") ? line.slice(2) : "E";
  },
});
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
          "import simbus\n" +
          `_sim = SimBoard(unhexlify('${parts[1]}').decode(), unhexlify('${parts[2]}'), '/flash',\n` +
          `               simbus.xfer if '${parts[3]}' == '1' else None)\n` +
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
      case "T": {
        const source = unhex(parts[1]);
        captured = [];
        const t0 = process.hrtime.bigint();
        mp.runPython(source);
        const ns = process.hrtime.bigint() - t0;
        return "ok " + ns + " " + hex(captured.join("\n"));
      }
      default:
        return "error " + hex("unknown request " + parts[0]);
    }
  } catch (err) {
    return "error " + hex(String(err && err.message ? err.message : err));
  }
}

for (;;) {
  const line = readLine();
  if (line === null) process.exit(0);
  writeLine(handle(line));
}
