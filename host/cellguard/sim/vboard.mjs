// The virtual dev board: MicroPython (WebAssembly port) serving its REPL on a
// pseudo-terminal, with a flash filesystem kept in a host folder (docs/virtual_board.md).
//
// argv: <path of micropython.mjs> <pty master fd> <flash folder> <options json>
// The Python launcher (virtual.py) made the pty and holds nothing else of it: this
// process reads and writes the master side without ever blocking on it.
// On stdout it prints one line per event for the launcher: "ready", "reset <cause>".
import fs from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";

const [mjsPath, fdArg, flashDir, optionsJson] = process.argv.slice(2);
const fd = parseInt(fdArg, 10);
const options = JSON.parse(optionsJson || "{}");
const { loadMicroPython } = await import(pathToFileURL(mjsPath).href);

const CTRL_A = 0x01, CTRL_B = 0x02, CTRL_C = 0x03, CTRL_D = 0x04, CTRL_E = 0x05;
const RAW_BANNER = "raw REPL; CTRL-B to exit\r\n>";
const USB_WRITE_TIMEOUT_MS = 500; // an rp2 CDC write waits this long for room, then drops

// ---------------------------------------------------------------- errno numbers
// The runtime's C library numbers errors as WASI does (ENOENT is 44), but its
// `errno` module and every board say ENOENT is 2: an OSError from the filesystem
// would match no `errno` constant and mpremote would not recognise it. Calls out of
// the WebAssembly module into its system-call layer get their errors renumbered to
// the ones a board gives (EAGAIN and EINTR stay: the runtime's own C code tests them).
const ERRNO = {
  63: 1, 44: 2, 29: 5, 8: 9, 48: 12, 2: 13, 10: 16, 20: 17, 75: 18, 43: 19, 54: 20,
  31: 21, 28: 22, 33: 24, 59: 25, 51: 28, 70: 29, 69: 30, 37: 36, 55: 39, 52: 38,
};
const instantiate = WebAssembly.instantiate;
WebAssembly.instantiate = function (source, imports) {
  for (const ns of new Set(Object.values(imports || {}))) { // env and wasi are one object
    for (const [name, fn] of Object.entries(ns)) {
      if (typeof fn !== "function") continue;
      if (name.startsWith("__syscall_")) {
        ns[name] = (...a) => { const r = fn(...a); return r < 0 && ERRNO[-r] ? -ERRNO[-r] : r; };
      } else if (name.startsWith("fd_")) {
        ns[name] = (...a) => { const r = fn(...a); return r > 0 && ERRNO[r] ? ERRNO[r] : r; };
      }
    }
  }
  return instantiate.call(this, source, imports);
};

// ---------------------------------------------------------------- the USB serial (pty)
const inq = []; // bytes from the host not yet consumed
let hostOpen = false; // a host has the port open (the slave side of the pty)
let running = false; // Python code is executing (Ctrl-C then raises KeyboardInterrupt)
let mp = null;
let outBuf = [];
const sleeper = new Int32Array(new SharedArrayBuffer(4));
const sleepMs = (ms) => Atomics.wait(sleeper, 0, 0, ms);
const readBuf = Buffer.alloc(4096);

function pollInput() {
  for (;;) {
    let n;
    try {
      n = fs.readSync(fd, readBuf, 0, readBuf.length, null);
    } catch (err) {
      if (err.code === "EAGAIN") { hostOpen = true; return; }
      if (err.code === "EIO") { hostOpen = false; return; } // no host has the port open
      throw err;
    }
    if (n === 0) return;
    hostOpen = true;
    for (let i = 0; i < n; i++) {
      const c = readBuf[i];
      if (running && mp !== null && c === interruptChar()) {
        mp._module._mp_sched_keyboard_interrupt();
      } else {
        inq.push(c);
      }
    }
  }
}

function interruptChar() {
  return mp._module.ccall("mp_hal_get_interrupt_char", "number", [], []);
}

function flushOut() {
  if (!outBuf.length) return;
  const data = Buffer.from(outBuf);
  outBuf = [];
  pollInput();
  if (!hostOpen) return; // USB CDC with no host: the bytes are dropped
  let off = 0;
  // Board time, read every millisecond: the wait is the chip's, and counts in full.
  let since = boardMs();
  while (off < data.length) {
    try {
      off += fs.writeSync(fd, data, off, data.length - off);
      since = boardMs();
    } catch (err) {
      if (err.code === "EIO") return;
      if (err.code !== "EAGAIN") throw err;
      // the host holds the port without reading
      if (boardMs() - since >= USB_WRITE_TIMEOUT_MS) return;
      sleepMs(1);
    }
  }
}

function emit(s) {
  for (const c of Buffer.from(s, "latin1")) outBuf.push(c);
}

// ---------------------------------------------------------------- the clock
// The runtime reads every clock through Date.now(): ticks_ms is Date.now() minus the
// value at load, and sleep_ms spins on it. Replaced here before the runtime loads:
// - board time runs at `speed` times the host's monotonic clock, but one clock read
//   advances it by at most MAX_STEP_MS of board time: a host that stops this process
//   (a loaded CI machine, a full pipe, a debugger) stops the board's clock with it, as
//   a stopped chip's timer would be, instead of letting the watchdog bite on return;
// - ticks_ms counts from power-on, not from the last soft reset (the load at a soft
//   reset sees the power-on instant);
// - a spin (sleep_ms, a wait loop) gives the host CPU back a millisecond at a time,
//   and every few milliseconds the port is read, so Ctrl-C interrupts running code.
const speed = options.speed > 0 ? options.speed : 1;
const realNow = Date.now;
const mono = () => performance.now();
const wallAtStart = realNow();
const monoAtStart = mono();
let powerOn = 0; // board ms at the last power-on (hard reset)
let loading = false;
let spinMs = -1;
let spinCalls = 0;
let lastPoll = 0;
// At the REPL the launcher sleeps 2 ms between looks and a spin 1 ms: a step of
// 4 ms of host time always counts in full, so an idle board keeps its speed.
const MAX_STEP_MS = Math.max(50, 4 * speed);
let monoLast = monoAtStart;
let boardNow = 0;
const boardMs = () => {
  const real = mono();
  const step = (real - monoLast) * speed;
  monoLast = real;
  if (step > 0) boardNow += Math.min(step, MAX_STEP_MS);
  return boardNow;
};
Date.now = () => {
  const t = boardMs();
  if (loading) return Math.floor(wallAtStart + powerOn);
  if (running) {
    if (hangUntil > t) hang();
    if (pendingReset !== null) checkWatchdog();
    if (wiring !== null && t - lastTick >= wiring.tick_ms) plantTick(t);
    if (timers.size && !inTimer) runTimers();
    const real = mono();
    if (real - lastPoll >= 5) {
      lastPoll = real;
      flushOut();
      pollInput();
      pollControl();
      checkWatchdog();
    }
    const ms = Math.floor(t);
    if (ms === spinMs) {
      if (++spinCalls > 200) {
        sleepMs(1);
        spinCalls = 0;
      }
    } else {
      spinMs = ms;
      spinCalls = 0;
    }
  }
  return Math.floor(wallAtStart + t);
};

// ---------------------------------------------------------------- the chip outside the VM
// What silicon keeps across a soft reset (pads, watchdog, reset cause) lives here;
// vboard_lib/machine.py reaches it through the `_vboard` module.
const MCU = options.mcu || "rp2040";
const PIN_COUNT = MCU === "esp32" ? 40 : 30;
const ADC_PINS = MCU === "esp32" ? [32, 33, 34, 35, 36, 37, 38, 39] : [26, 27, 28, 29, -1];
const CAUSE_CODE = { power_on: 1, watchdog: 3, reset: MCU === "esp32" ? 5 : 3 };
// ESP32 ADC full scale by attenuation (mV), as its port's read_uv; rp2: 3.3 V reference.
const ESP32_FULL_MV = [950, 1250, 1750, 2450];
let pins = [];
let wdt = null; // {timeout, deadline} in board ms: keeps running across a soft reset
let resetCode = 1;
let freqHz = MCU === "esp32" ? 160000000 : 125000000;
const adcMv = new Map(); // pin -> millivolts the host puts on it
const extLevel = new Map(); // pin -> level the host drives on it (an input)

// ---------------------------------------------------------------- the plant's wiring
// With a plant (virtual.py, wiring.py) the host keeps, per ADC input (and per mux
// channel of the cell pin), a ring of modelled conversions it refills at every plant
// tick; a read takes the next one. The board reports "tick <board ms> <levels>" of
// the pins that drive the plant every `tick_ms` of board time (at most every
// TICK_REAL_MS of host time) and at once when one of them changes.
const wiring = options.wiring || null;
const TICK_REAL_MS = 2;
const codes = new Map(); // "pin" or "pin:channel" -> {u16: [], uv: [], i}
const staged = new Map(); // a tick's codes until its "commit"
let lastTick = -Infinity;
let lastTickReal = -Infinity;
let lastLevels = "";
let hangUntil = -1; // board ms: the firmware is stuck (a bug, a peripheral) until then

function ring(id) {
  if (wiring === null || !codes.size) return null;
  let key = String(id);
  if (id === wiring.cell_pin) {
    let ch = 0;
    wiring.select.forEach((p, bit) => { ch |= pinLevel(p) << bit; });
    key += ":" + ch;
  }
  return codes.get(key) || null;
}

function plantTick(t, force = false) {
  if (wiring === null) return;
  const real = mono();
  const levels = wiring.watch.map((p) => pinLevel(p)).join(",");
  if (!force && levels === lastLevels && real - lastTickReal < TICK_REAL_MS) return;
  lastTick = t;
  lastTickReal = real;
  lastLevels = levels;
  process.stdout.write(`tick ${Math.floor(t)} ${levels}\n`);
}

function watched(id) {
  if (wiring !== null && wiring.watch.includes(id)) plantTick(boardMs(), true);
}

function hang() {
  // The interpreter stuck inside one call: nothing runs, nothing feeds the watchdog;
  // the pads hold their levels, the plant and the host's commands go on.
  while (boardMs() < hangUntil) {
    sleepMs(1);
    flushOut();
    pollInput();
    pollControl();
    const t = boardMs();
    if (wiring !== null && t - lastTick >= wiring.tick_ms) plantTick(t);
    checkWatchdog();
  }
  hangUntil = -1;
}

function hardResetChip(cause) {
  pins = Array.from({ length: PIN_COUNT }, () => ({ mode: 0, pull: MCU === "esp32" ? 0 : 2, latch: 0, drive: 0 }));
  wdt = null;
  hangUntil = -1;
  resetCode = CAUSE_CODE[cause] || 1;
  freqHz = MCU === "esp32" ? 160000000 : 125000000;
}

function pinLevel(id) {
  const p = pins[id];
  if (p.mode === 1 || (p.mode === 2 && p.latch === 0)) return p.latch;
  if (extLevel.has(id)) return extLevel.get(id);
  return p.pull === 1 ? 1 : 0; // pulled up, or down, or floating (reads 0 here)
}

let pendingReset = null;
// machine.Timer: soft timers of the interpreter, so a soft reset ends them (the
// watchdog it leaves running). Callbacks run when the board reads its clock or
// sits at the REPL, as scheduled (soft) callbacks run between bytecodes.
let timers = new Map(); // key -> {periodic, periodMs, due, cb}
let inTimer = false;

function runTimers() {
  if (inTimer || !timers.size) return;
  inTimer = true;
  try {
    const now = boardMs();
    for (const [key, t] of timers) {
      if (now < t.due) continue;
      if (t.periodic) t.due += t.periodMs * Math.max(1, Math.ceil((now - t.due) / t.periodMs));
      else timers.delete(key);
      try {
        t.cb();
      } catch (err) {
        if (err instanceof BoardReset) throw err;
        emit(`Unhandled exception in timer callback: ${err.message || err}\r\n`);
      }
    }
  } finally {
    inTimer = false;
  }
}

function checkWatchdog() {
  if (pendingReset !== null) {
    const cause = pendingReset;
    pendingReset = null;
    throw new BoardReset(cause);
  }
  if (wdt !== null && boardMs() > wdt.deadline) throw new BoardReset("watchdog");
}

function adcUvOf(id, atten) {
  return Math.round(Math.max(0, Math.min(adcMv.get(id) || 0,
    MCU === "esp32" ? ESP32_FULL_MV[atten] : 3300)) * 1000);
}

function adcU16Of(id, atten) {
  const full = MCU === "esp32" ? ESP32_FULL_MV[atten] : 3300;
  const mv = Math.max(0, Math.min(adcMv.get(id) || 0, full));
  return Math.min(65535, Math.round((mv / full) * 65535));
}

const vboardModule = {
  mcu: () => MCU,
  pin_count: () => PIN_COUNT,
  pin_set: (id, v) => { pins[id].latch = v ? 1 : 0; watched(id); },
  pin_latch: (id) => pins[id].latch,
  pin_get: (id) => pinLevel(id),
  pin_mode: (id, m) => { if (m >= 0) { pins[id].mode = m; watched(id); } return pins[id].mode; },
  pin_pull: (id, p) => { if (p >= 0) { pins[id].pull = p; watched(id); } return pins[id].pull; },
  pin_drive: (id, d) => { if (d >= 0) pins[id].drive = d; return pins[id].drive; },
  adc_ok: (id) => ADC_PINS.includes(id),
  adc_uv: (id, atten) => {
    const r = ring(id);
    if (r !== null && r.uv.length) return r.uv[r.i++ % r.uv.length];
    return adcUvOf(id, atten);
  },
  adc_u16: (id, atten) => {
    const r = ring(id);
    if (r !== null) return r.u16[r.i++ % r.u16.length];
    return adcU16Of(id, atten);
  },
  // A JS exception thrown here would reach Python as an exception it could catch;
  // one thrown from the clock (Date.now, which machine.reset then reads) unwinds
  // the interpreter without running its `finally` blocks, as a reset does.
  reset: () => { pendingReset = "reset"; },
  soft_reset: () => { pendingReset = "soft"; },
  reset_cause: () => resetCode,
  unique_id: () => options.unique_id || "e66038b7132a4c2f",
  freq: (hz) => { if (hz > 0) freqHz = hz; return freqHz; },
  idle: () => { sleepMs(1); },
  wdt_start: (timeout) => {
    const max = MCU === "esp32" ? 0x7fffffff : 8388;
    if (!(timeout >= 1 && timeout <= max)) throw new Error("ValueError: timeout");
    wdt = { timeout, deadline: boardMs() + timeout };
  },
  wdt_feed: () => { if (wdt) wdt.deadline = boardMs() + wdt.timeout; },
  timer_start: (key, periodic, periodMs, cb) => {
    timers.set(key, { periodic: !!periodic, periodMs, due: boardMs() + periodMs, cb });
  },
  timer_stop: (key) => { timers.delete(key); },
  timer_count: () => timers.size,
};

// ---------------------------------------------------------------- host control
// Lines on stdin from the launcher: "adc <pin> <mV>", "drive <pin> <0|1|->", "pins",
// "codes <pin[:channel]> <u16,...> <uv,...|->" (the plant's; current at the next
// "commit"), "hang <ms>".
let ctrlPending = "";
const ctrlBuf = Buffer.alloc(4096);
function pollControl() {
  let n;
  try {
    n = fs.readSync(0, ctrlBuf, 0, ctrlBuf.length, null);
  } catch (err) {
    if (err.code === "EAGAIN") return;
    throw err;
  }
  if (n === 0) process.exit(0); // the launcher is gone: so is the board
  ctrlPending += ctrlBuf.toString("latin1", 0, n);
  let nl;
  while ((nl = ctrlPending.indexOf("\n")) >= 0) {
    const [cmd, a, b, c] = ctrlPending.slice(0, nl).split(" ");
    ctrlPending = ctrlPending.slice(nl + 1);
    if (cmd === "adc") {
      const id = parseInt(a, 10);
      adcMv.set(id, parseFloat(b));
      for (const key of [...codes.keys()]) if (key.split(":")[0] === String(id)) codes.delete(key);
    } else if (cmd === "codes") {
      staged.set(a, { u16: b.split(",").map(Number), uv: c === "-" ? [] : c.split(",").map(Number), i: 0 });
    } else if (cmd === "commit") {
      // a tick's conversions become current together, as real pins move together
      for (const [key, ring] of staged) codes.set(key, ring);
      staged.clear();
    } else if (cmd === "hang") hangUntil = boardMs() + parseFloat(a);
    else if (cmd === "drive") b === "-" ? extLevel.delete(parseInt(a, 10)) : extLevel.set(parseInt(a, 10), b === "1" ? 1 : 0);
    else if (cmd === "pins") {
      const state = pins.map((p, id) => ({ mode: p.mode, pull: p.pull, latch: p.latch, level: pinLevel(id) }));
      process.stdout.write("pins " + JSON.stringify(state) + "\n");
    }
  }
}

// ---------------------------------------------------------------- the flash (host folder)
// The board's filesystem is an in-memory one loaded from the folder at each boot; every
// change is written through to the folder: a file when it is closed (written beside and
// renamed over, so the folder never holds a half-written file as the only copy), and
// mkdir, unlink, rmdir and rename as they happen.
const HIDDEN = new Set(["dev", "proc", ".vboard"]); // the runtime's own, not the board's
const LIB_DIR = path.join(path.dirname(new URL(import.meta.url).pathname), "vboard_lib");

function hostPath(p) {
  const rel = path.posix.normalize(p).replace(/^\/+/, "");
  return path.join(flashDir, rel);
}

function onFlash(p) {
  if (typeof p !== "string" || !p.startsWith("/")) return false;
  const top = p.split("/")[1];
  return top !== "" && !HIDDEN.has(top);
}

function atomicWrite(target, data) {
  const tmp = path.join(path.dirname(target), "." + path.basename(target) + ".tmp~");
  const h = fs.openSync(tmp, "w");
  try {
    fs.writeSync(h, data);
    fs.fsyncSync(h);
  } finally {
    fs.closeSync(h);
  }
  fs.renameSync(tmp, target);
}

function loadFlash(FS, hostDir, boardDir) {
  for (const entry of fs.readdirSync(hostDir, { withFileTypes: true })) {
    if (entry.name.endsWith(".tmp~")) continue; // a write cut short: the old file stands
    const from = path.join(hostDir, entry.name);
    const to = (boardDir === "/" ? "" : boardDir) + "/" + entry.name;
    if (entry.isDirectory()) {
      FS.mkdir(to);
      loadFlash(FS, from, to);
    } else if (entry.isFile()) {
      FS.writeFile(to, fs.readFileSync(from));
    }
  }
}

function setUpFlash(FS) {
  for (const p of ["/tmp", "/home/web_user", "/home"]) {
    try { FS.rmdir(p); } catch { /* not there */ }
  }
  FS.chdir("/");
  FS.mkdir("/.vboard"); // the board's built-in modules (machine)
  for (const name of fs.readdirSync(LIB_DIR)) {
    if (name.endsWith(".py")) FS.writeFile("/.vboard/" + name, fs.readFileSync(path.join(LIB_DIR, name)));
  }
  loadFlash(FS, flashDir, "/");
  const orig = {
    close: FS.close, unlink: FS.unlink, rmdir: FS.rmdir, mkdir: FS.mkdir,
    rename: FS.rename, readdir: FS.readdir,
  };
  FS.close = (stream) => {
    const p = stream.path;
    const written = (stream.flags & 3) !== 0 && FS.isFile(stream.node.mode);
    orig.close(stream);
    if (written && onFlash(p)) {
      atomicWrite(hostPath(p), FS.readFile(p));
      flashStall();
    }
  };
  FS.unlink = (p) => {
    const a = abs(FS, p);
    orig.unlink(p);
    if (onFlash(a)) {
      fs.rmSync(hostPath(a), { force: true });
      flashStall();
    }
  };
  FS.rmdir = (p) => {
    const a = abs(FS, p);
    orig.rmdir(p);
    if (onFlash(a)) fs.rmdirSync(hostPath(a));
  };
  FS.mkdir = (p, mode) => {
    const a = abs(FS, p);
    const node = orig.mkdir(p, mode);
    if (onFlash(a)) fs.mkdirSync(hostPath(a), { recursive: true });
    return node;
  };
  FS.rename = (from, to) => {
    const a = abs(FS, from), b = abs(FS, to);
    orig.rename(from, to);
    if (onFlash(a) && onFlash(b)) fs.renameSync(hostPath(a), hostPath(b));
  };
  FS.readdir = (p) => {
    const names = orig.readdir(p);
    return abs(FS, p) === "/" ? names.filter((n) => !HIDDEN.has(n)) : names;
  };
}

// A flash erase/program stalls the chip (XIP off: no code runs) for
// options.flash_stall_ms of board time per file written or removed (0: off).
// Board time goes on; nothing runs, so nothing feeds the watchdog; the pads hold.
const FLASH_STALL_MS = options.flash_stall_ms > 0 ? options.flash_stall_ms : 0;

function flashStall() {
  if (!FLASH_STALL_MS || !running) return;
  const start = boardMs();
  process.stdout.write(`stall ${Math.floor(start)} ${FLASH_STALL_MS}\n`);
  while (boardMs() - start < FLASH_STALL_MS) sleepMs(1);
}

function abs(FS, p) {
  return path.posix.normalize(p.startsWith("/") ? p : FS.cwd() + "/" + p);
}

// ---------------------------------------------------------------- boot and reset
class BoardReset extends Error {
  constructor(cause) { super("board reset: " + cause); this.cause = cause; }
}

let rawMode = false; // the REPL the host left the board in (raw REPL: Ctrl-A)
let pasteHeld = []; // a raw-paste request (Ctrl-E 'A' Ctrl-A) being recognised
let rawLineEmpty = false;
let cooked = false; // output at the friendly REPL gets CR LF line ends

function runFile(name) {
  // As pyexec_file: in __main__'s namespace, a traceback printed, never fatal.
  running = true;
  try {
    mp.runPython(
      "def _vb_run():\n" +
      "    import sys\n" +
      `    try:\n        f = open('${name}')\n    except OSError:\n        return\n` +
      "    with f:\n        src = f.read()\n" +
      "    import micropython\n" +
      "    micropython.kbd_intr(3)\n" + // as pyexec_file: Ctrl-C stops the script
      "    try:\n" +
      `        exec(compile(src, '${name}', 'exec'), globals())\n` +
      "    except SystemExit:\n        return True\n" +
      "    except BaseException as e:\n        sys.print_exception(e)\n" +
      "_vb_exit = _vb_run()\ndel _vb_run\nimport micropython\nmicropython.kbd_intr(-1)\n",
    );
  } finally {
    running = false;
  }
  const exit = mp.globals.get("_vb_exit");
  mp.globals.delete("_vb_exit");
  return exit === true;
}

async function boot(runMain) {
  outBuf.length && flushOut();
  timers = new Map(); // a fresh interpreter has no timers
  loading = true;
  mp = await loadMicroPython({
    stdout: (b) => {
      for (const c of b) {
        // A board's print at the friendly REPL ends lines with CR LF; this runtime's
        // with LF alone. What boot.py, main.py and the raw REPL write passes as it is.
        if (cooked && c === 10 && outBuf[outBuf.length - 1] !== 13) outBuf.push(13);
        outBuf.push(c);
      }
    },
    stderr: (b) => { for (const c of b) outBuf.push(c); },
    // sys.stdin is the USB serial too: what the host sent and the REPL has not taken.
    stdin: () => {
      if (!inq.length) pollInput();
      return inq.length ? inq.shift() : null;
    },
    linebuffer: false,
  });
  loading = false;
  setUpFlash(mp.FS);
  mp.registerJsModule("_vboard", vboardModule);
  mp.runPython("import sys\nsys.path.append('/.vboard')");
  pollControl(); // the host's first codes, before anything reads an ADC
  plantTick(boardMs(), true); // the pads as this boot left them (a reset: all inputs)
  process.stdout.write("boot\n");
  for (;;) {
    try {
      if (runFile("boot.py")) return "soft";
      if (runMain && runFile("main.py")) return "soft";
      break;
    } catch (err) {
      if (err instanceof BoardReset) return err.cause;
      throw err;
    }
  }
  const hold = outBuf;
  outBuf = [];
  mp.replInit();
  if (rawMode) {
    outBuf = hold; // the friendly banner is not shown: the board is back in the raw REPL
    mp.replProcessChar(CTRL_A);
    rawLineEmpty = true;
  } else {
    outBuf = hold.concat(outBuf);
  }
  flushOut();
  return null;
}

function replChar(c) {
  // Raw-paste mode hangs this runtime's event-driven REPL (it waits for stdin that
  // never comes): answer "R\x00", "understood but not supported", as a board
  // without it does; mpremote then uses the plain raw REPL.
  if (rawMode && rawLineEmpty && (pasteHeld.length || c === CTRL_E)) {
    pasteHeld.push(c);
    const want = [CTRL_E, 0x41, CTRL_A];
    if (pasteHeld.every((x, i) => x === want[i])) {
      if (pasteHeld.length < 3) return 0;
      pasteHeld = [];
      emit("R\x00");
      return 0;
    }
    const held = pasteHeld;
    pasteHeld = [];
    let r = 0;
    for (const x of held) r = r || feed(x);
    return r;
  }
  return feed(c);
}

function feed(c) {
  if (!rawMode && c === CTRL_A) rawMode = true;
  else if (rawMode && c === CTRL_B) rawMode = false;
  running = true;
  cooked = !rawMode;
  let r;
  try {
    r = mp.replProcessChar(c);
  } finally {
    running = false;
    cooked = false;
  }
  if (rawMode) rawLineEmpty = c === CTRL_D || c === CTRL_C || c === CTRL_A;
  return r;
}

async function main() {
  fs.mkdirSync(flashDir, { recursive: true });
  let cause = "power_on";
  let runMain = true;
  for (;;) {
    if (cause !== "soft") {
      powerOn = boardMs();
      hardResetChip(cause);
    }
    let next = await boot(runMain);
    if (next === null) {
      process.stdout.write(`ready ${cause}\n`);
      next = serve();
    }
    runMain = !(next === "soft" && rawMode);
    if (next !== "soft") rawMode = false;
    cause = next;
    if (next === "soft") emit("MPY: soft reboot\r\n");
    process.stdout.write(`reset ${next}\n`);
  }
}

function serve() {
  for (;;) {
    pollInput();
    pollControl();
    try {
      checkWatchdog(); // at the REPL too: nothing feeds it there
      const now = boardMs();
      if (wiring !== null && now - lastTick >= wiring.tick_ms) plantTick(now);
      if (timers.size) {
        running = true;
        try {
          runTimers();
        } finally {
          running = false;
        }
      }
    } catch (err) {
      if (err instanceof BoardReset) return err.cause;
      throw err;
    }
    if (!inq.length) {
      flushOut();
      sleepMs(2);
      continue;
    }
    while (inq.length) {
      let r;
      try {
        r = replChar(inq.shift());
      } catch (err) {
        if (err instanceof BoardReset) return err.cause;
        throw err;
      }
      if (r) {
        flushOut();
        return "soft";
      }
    }
    flushOut();
  }
}

await main();
