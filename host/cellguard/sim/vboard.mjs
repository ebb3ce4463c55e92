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
// The chip's behaviours where silicon bites, each a switch (host/cellguard/sim/silicon.py;
// these defaults are an RP2040's).
const SILICON = Object.assign({
  soft_reset_keeps_pins: true, hard_reset_resets_pins: true,
  watchdog_survives_soft_reset: true, usb_write_timeout_ms: 500, tx_buffer_bytes: 256,
  drop_output_without_host: true, flash_stall_ms: 0, flash_stall_worst_ms: 0,
  flash_worst_share: 0,
}, options.silicon || {});
// A USB write waits this long for a host that holds the port without reading, then
// its bytes are dropped (rp2 CDC: 500 ms; 0: never waits, as an ESP32's UART).
const USB_WRITE_TIMEOUT_MS = SILICON.usb_write_timeout_ms;
const HOLD_MAX = 65536; // output kept for the next host (drop_output_without_host off)

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
// Host ms this process slept in sleepMs: the board's idle time. Not the wake-up's
// lateness (a loaded host that runs it late): that time is the host's.
let sleptMs = 0;
const sleepMs = (ms) => {
  const t = performance.now();
  Atomics.wait(sleeper, 0, 0, ms);
  sleptMs += Math.min(performance.now() - t, ms);
};
const readBuf = Buffer.alloc(4096);

// The chip's receive buffer: while it is full the board takes no more from the host
// (USB answers NAK; the host's writes wait), as a board that reads slower than a
// host writes.
const STDIN_MAX = 4096;

function pollInput() {
  for (;;) {
    if (inq.length >= STDIN_MAX) return;
    let n;
    try {
      n = fs.readSync(fd, readBuf, 0, Math.min(readBuf.length, STDIN_MAX - inq.length), null);
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

// The USB serial's transmit side, as the rp2 port's TinyUSB CDC: `outBuf` is the
// chip's TX FIFO, which the host empties as it reads (here: into the pty).
// - flushOut() moves what the host takes; it never waits;
// - a write by the interpreter (print, sys.stdout.write: one call of usbWrite) waits,
//   while the FIFO is full, up to usb_write_timeout_ms of board time in all, then its
//   remaining bytes are dropped (0: never waits, as an ESP32's UART through a bridge);
// - poll() on stdout reports POLLOUT only while the FIFO has room (or no host is there);
// - with no host, output is dropped (drop_output_without_host) or kept for the next one.
const TX_FIFO = Math.max(1, Math.floor(SILICON.tx_buffer_bytes)); // rp2: TinyUSB's CDC TX buffer
let lastOut = -1;

function flushOut() {
  if (!outBuf.length) return;
  pollInput();
  if (hostOpen) writeOut();
  if (!hostOpen) {
    if (SILICON.drop_output_without_host) outBuf = []; // USB CDC with no host: dropped
    else if (outBuf.length > HOLD_MAX) outBuf.splice(0, outBuf.length - HOLD_MAX);
  }
}

// Host ms when the pty last took less than it was given (the host holds the port
// without reading): the next try waits a millisecond. The firmware looks at stdout
// before each byte it writes, and a failed write of the backlog per byte made a
// board whose host buffer (an ESP32's 64 KB) was filling spend its time here.
let heldAt = -Infinity;

function writeOut() {
  if (mono() - heldAt < 1) return;
  // In pieces: a large backlog (an ESP32's host buffer) that the host does not read
  // costs one small failed write, not a copy of the whole backlog, per look.
  let off = 0;
  try {
    while (off < outBuf.length) {
      const data = Buffer.from(outBuf.slice(off, off + 4096));
      const n = fs.writeSync(fd, data, 0, data.length);
      if (n <= 0) break;
      off += n;
      if (n < data.length) {
        heldAt = mono();
        break;
      }
    }
  } catch (err) {
    if (err.code === "EIO") hostOpen = false; // the host closed the port
    else if (err.code !== "EAGAIN") throw err; // EAGAIN: the host holds it, not reading
    else heldAt = mono();
  }
  if (off) outBuf = outBuf.slice(off);
}

// The runtime hands over stdout a byte at a time and reads the clock (Date.now) at the
// end of each write call: `call` is the write call in progress.
let call = null; // {start: board ms, dropped: bytes}

function usbWrite(b) {
  const bytes = [];
  for (const c of b) {
    if (withhold.length) { // the raw REPL's "OK" that raw-paste does not send
      if (c === withhold[0]) {
        withhold.shift();
        continue;
      }
      withhold = [];
    }
    // A board's print at the friendly REPL ends lines with CR LF; this runtime's
    // with LF alone. What boot.py, main.py and the raw REPL write passes as it is.
    if (cooked && c === 10 && lastOut !== 13) bytes.push(13);
    bytes.push(c);
    lastOut = c;
  }
  if (!running) { // the REPL's own output (banner, prompt): the launcher sends it on
    for (const c of bytes) outBuf.push(c);
    return;
  }
  if (call === null) call = { start: boardMs(), dropped: 0 };
  for (const c of bytes) {
    if (call.dropped) { call.dropped++; continue; }
    // Board time, read every millisecond: the wait is the chip's, and counts in full.
    while (hostOpen && outBuf.length >= TX_FIFO) {
      flushOut();
      if (outBuf.length < TX_FIFO || boardMs() - call.start >= USB_WRITE_TIMEOUT_MS) break;
      sleepMs(1);
    }
    if (hostOpen && outBuf.length >= TX_FIFO) call.dropped = 1;
    else outBuf.push(c);
  }
}

function endWriteCall() {
  if (call !== null && call.dropped) {
    const waited = Math.round(boardMs() - call.start);
    process.stdout.write(`usbdrop ${Math.floor(boardMs())} ${waited} ${call.dropped}\n`);
  }
  call = null;
}

function usbPoll(ops) {
  // stdout's POLLOUT only while the TX FIFO has room (rp2: tud_cdc_write_available).
  if (ops.vboardPoll) return;
  const orig = ops.poll;
  ops.poll = (stream, timeout) => {
    if (stream.fd === 1 || stream.fd === 2) {
      flushOut();
      return !hostOpen || outBuf.length < TX_FIFO ? 4 : 0;
    }
    return orig ? orig(stream, timeout) : 5;
  };
  ops.vboardPoll = true;
}

function emit(s) {
  for (const c of Buffer.from(s, "latin1")) outBuf.push(c);
}

// ---------------------------------------------------------------- the clock
// The runtime reads every clock through Date.now(): ticks_ms is Date.now() minus the
// value at load, and sleep_ms spins on it. Replaced here before the runtime loads:
// - board time runs at `speed` times this process's own time: the CPU time it used
//   plus the time it slept (sleepMs), never more than the host's monotonic clock.
//   Time the host gives to other processes (a loaded CI machine), or spends with this
//   one stopped (a full pipe, a debugger), is not the board's: its clock stops, as a
//   stopped chip's timer would, instead of the firmware seeming slow and the watchdog
//   biting. And one clock read advances it by at most MAX_STEP_MS of board time;
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
const cpuMs = () => {
  const c = process.cpuUsage();
  return (c.user + c.system) / 1000;
};
let monoLast = monoAtStart;
let ownLast = cpuMs();
let boardNow = 0;
const boardMs = () => {
  const real = mono();
  const own = cpuMs() + sleptMs;
  const step = Math.min(real - monoLast, own - ownLast) * speed;
  monoLast = real;
  ownLast = own;
  if (step > 0) boardNow += Math.min(step, MAX_STEP_MS);
  return boardNow;
};
Date.now = () => {
  if (call !== null) endWriteCall();
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

function resetPins() {
  pins = Array.from({ length: PIN_COUNT }, () => ({ mode: 0, pull: MCU === "esp32" ? 0 : 2, latch: 0, drive: 0 }));
}

function hardResetChip(cause) {
  // Every pad to its reset default (an output opens), unless switched off (no chip
  // keeps its pads through a reset; power-on always starts from the default).
  if (cause === "power_on" || SILICON.hard_reset_resets_pins || !pins.length) resetPins();
  wdt = null;
  hangUntil = -1;
  resetCode = CAUSE_CODE[cause] || 1;
  freqHz = MCU === "esp32" ? 160000000 : 125000000;
}

function softResetChip() {
  // A soft reset is the interpreter's: the pads and the watchdog are the chip's.
  if (!SILICON.soft_reset_keeps_pins) resetPins();
  if (!SILICON.watchdog_survives_soft_reset) wdt = null;
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
    // As the ports' soft timers: the earliest due first, and a periodic timer that
    // fell behind fires once for every period it missed (expiry += period).
    for (let fired = 0; fired < 100000; fired++) {
      let key = null;
      let t = null;
      for (const [k, e] of timers) if (e.due <= now && (t === null || e.due < t.due)) [key, t] = [k, e];
      if (t === null) break;
      if (t.periodic) t.due += Math.max(t.periodMs, 1);
      else timers.delete(key);
      try {
        t.cb();
      } catch (err) {
        if (err instanceof BoardReset) throw err;
        emit(`Unhandled exception in timer callback: ${err.message || err}\r\n`);
        if (timers.get(key) === t) timers.delete(key); // disabled, as the ports do
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
  i2c: (bus, freq, timeoutUs, ops) => i2cTransfer(bus, freq, timeoutUs, ops),
};

// ---------------------------------------------------------------- I2C
// The chips on the board's I2C buses live in the launcher (virtual.py, i2c.py). A
// transfer is synchronous, as on a board: the request goes out on the event pipe
// ("i2c <seq> <board ms> <scl>,<sda> <ops>"), the board waits for the launcher's
// answer on the control pipe ("i2c <seq> <results>"), taking every other control
// line as it comes (ADC codes, driven inputs). The launcher's time does not count on
// the board's clock; the transfer's own does: 9 bit times per byte and one per START
// and STOP at the bus frequency, or the controller's timeout when the bus is stuck.
// A launcher that does not answer within I2C_HOST_TIMEOUT_MS of host time is a stuck
// bus too ("H"); its late answer is dropped by its sequence number.
const I2C_HOST_TIMEOUT_MS = options.i2c_host_timeout_ms > 0 ? options.i2c_host_timeout_ms : 2000;
let i2cSeq = 0;
let i2cWant = -1;
let i2cReply = null;

function i2cTransfer(bus, freq, timeoutUs, ops) {
  const seq = ++i2cSeq;
  const t0 = boardMs();
  i2cWant = seq;
  i2cReply = null;
  process.stdout.write(`i2c ${seq} ${t0.toFixed(3)} ${bus} ${ops}\n`);
  const start = mono();
  let spins = 0;
  while (i2cReply === null && mono() - start < I2C_HOST_TIMEOUT_MS) {
    pollControl();
    if (i2cReply === null && ++spins > 20) Atomics.wait(sleeper, 0, 0, 0.02);
  }
  const reply = i2cReply === null ? "H" : i2cReply;
  i2cWant = -1;
  i2cReply = null;
  let bits = 0, stuck = reply === "H" ? 1 : 0;
  const list = reply === "H" || reply === "E" ? [] : ops.split(","); // E: the launcher's device failed
  const results = reply.split(",");
  list.forEach((op, i) => {
    const r = results[i];
    if (op[0] === "S" || op[0] === "P") bits += 1;
    else if (r === "T") stuck += 1;
    else if (op[0] === "W" && r !== "x") bits += 9 * Math.min(parseInt(r, 10) + 1, (op.length - 1) / 2);
    else if (op[0] === "R" && r !== "x") bits += 9 * parseInt(op.slice(1), 10);
  });
  // The board's clock: the transfer's bus time, not the launcher's.
  monoLast = mono();
  ownLast = cpuMs() + sleptMs;
  boardNow = t0 + (bits * 1000) / Math.max(freq, 1) + (stuck * timeoutUs) / 1000;
  return reply;
}

// ---------------------------------------------------------------- host control
// Lines on stdin from the launcher: "adc <pin> <mV>", "drive <pin> <0|1|->", "pins",
// "codes <pin[:channel]> <u16,...> <uv,...|->" (the plant's; current at the next
// "commit"), "hang <ms>", "i2c <seq> <results>" (the answer to a transfer, below).
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
    if (cmd === "i2c") {
      if (parseInt(a, 10) === i2cWant) i2cReply = b; // else a late answer to a given-up transfer
    } else if (cmd === "adc") {
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
    else if (cmd === "power") pendingReset = "power_on"; // off and on again, USB kept
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
  // A byte the host sends reaches the chip while Python runs (a USB or UART
  // interrupt), not only when it reads its clock: the port is read at every file
  // open too (imports included), so a Ctrl-C sent while main.py still loads from
  // flash interrupts it as it would on a board.
  const open = FS.open;
  FS.open = (...a) => {
    if (running && mp !== null) pollInput();
    return open(...a);
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
// silicon.flash_stall_ms of board time per file written or removed (0: off), or for
// flash_stall_worst_ms in a share flash_worst_share of the stalls, drawn from the
// board's seed. Board time goes on; nothing runs, so nothing feeds the watchdog; the
// pads hold.
let rngState = ((options.seed | 0) ^ 0x5eed1e55) >>> 0;
function random() { // a small seeded generator (mulberry32)
  rngState = (rngState + 0x6d2b79f5) >>> 0;
  let t = rngState;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}

function flashStall() {
  if (!running || !(SILICON.flash_stall_ms > 0 || SILICON.flash_worst_share > 0)) return;
  const worst = SILICON.flash_worst_share > 0 && random() < SILICON.flash_worst_share;
  const length = worst ? SILICON.flash_stall_worst_ms : SILICON.flash_stall_ms;
  if (!(length > 0)) return;
  const start = boardMs();
  process.stdout.write(`stall ${Math.floor(start)} ${length}\n`);
  while (boardMs() - start < length) sleepMs(1);
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
  // As pyexec_file: in __main__'s namespace, a traceback printed, never fatal; Ctrl-C
  // on (interrupt char 3) from after the compile to the end of the run only.
  running = true;
  let exit = null;
  try {
    mp.runPython(
      "import micropython as _vb_m\n" +
      "_vb_m.kbd_intr(-1)\n" +
      "def _vb_run():\n" +
      "    import sys\n" +
      `    try:\n        f = open('${name}')\n    except OSError:\n        return\n` +
      "    with f:\n        src = f.read()\n" +
      "    try:\n" +
      `        code = compile(src, '${name}', 'exec')\n` +
      "        _vb_m.kbd_intr(3)\n" +
      "        exec(code, globals())\n" +
      "    except SystemExit:\n        return True\n" +
      "    except BaseException as e:\n        sys.print_exception(e)\n" +
      "try:\n    _vb_exit = _vb_run()\nfinally:\n    _vb_m.kbd_intr(-1)\n" +
      "del _vb_run, _vb_m\n",
    );
    exit = mp.globals.get("_vb_exit");
    mp.globals.delete("_vb_exit");
  } catch (err) {
    if (err instanceof BoardReset || err.name !== "PythonError") throw err;
    // A Ctrl-C that reached the edges of the run (after the script's own handler):
    // pyexec prints it and goes on, as here.
    emit(`${err.type}: ${err.message}\r\n`);
  } finally {
    running = false;
  }
  return exit === true;
}

async function boot(runMain) {
  outBuf.length && flushOut();
  timers = new Map(); // a fresh interpreter has no timers
  paste = null; // nor a raw-paste half read
  pasteHeld = [];
  withhold = [];
  loading = true;
  mp = await loadMicroPython({
    stdout: usbWrite,
    stderr: usbWrite,
    // sys.stdin is the USB serial too: what the host sent and the REPL has not taken.
    stdin: () => {
      if (!inq.length) pollInput();
      return inq.length ? inq.shift() : null;
    },
    linebuffer: false,
  });
  loading = false;
  setUpFlash(mp.FS);
  const stdout = mp.FS.getStream(1);
  if (stdout) usbPoll(stdout.stream_ops);
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

// ---------------------------------------------------------------- raw-paste mode
// The runtime has pyexec's raw-paste reader, but its mp_hal_stdin_rx_chr() is a stub
// that returns 0 forever (the reader would never see the host's Ctrl-D), so the
// launcher plays the reader's part, byte for byte as pyexec.c's mp_reader_stdin does:
// "R\x01", the window (2 bytes, little-endian) and "\x01" (a second window free), a
// "\x01" each time the board has taken a window, "\x04" when the host's Ctrl-D (end)
// or Ctrl-C (abort) arrives. The source then runs through the runtime's own raw REPL
// (the same parse, compile, execute and output framing: "\x04", errors, "\x04", ">"),
// with the raw REPL's "OK" withheld, as raw-paste does not send it.
// MICROPY_REPL_STDIN_BUFFER_MAX is 256 on rp2 and esp32 (neither port sets it):
// the window is half of it.
const PASTE_WINDOW = 128;
let paste = null; // {data: [], remain}: the board is reading a raw-paste
let withhold = []; // bytes the runtime is about to write that the host must not see

function startPaste() {
  emit("R\x01");
  emit(String.fromCharCode(PASTE_WINDOW & 0xff, PASTE_WINDOW >> 8, 0x01));
  paste = { data: [], remain: PASTE_WINDOW };
}

function pasteChar(c) {
  if (c === CTRL_C) {
    // pyexec: the reader ends ("\x04") and raises KeyboardInterrupt (no traceback)
    // before anything is compiled: "\x04", the exception, "\x04", then the prompt.
    // Printed as the runtime prints an uncaught exception (CR LF line ends).
    paste = null;
    emit("\x04\x04KeyboardInterrupt: \r\n\x04>");
    return 0;
  }
  if (c !== CTRL_D) {
    paste.data.push(c);
    if (--paste.remain === 0) {
      emit("\x01"); // the board has taken a window: the host may send another
      paste.remain = PASTE_WINDOW;
    }
    return 0;
  }
  const data = paste.data;
  paste = null;
  emit("\x04"); // the end of data, acknowledged before compiling
  if (data.includes(CTRL_A) || data.includes(CTRL_B)) return runStaged(data);
  // Into the raw REPL's line, then its Ctrl-D: an empty line there would be a soft
  // reset, an empty source here compiles to nothing, as a lone newline does.
  for (const x of data.length ? data : [10]) mp.replProcessChar(x);
  withhold = [0x4f, 0x4b]; // "OK"
  return feed(CTRL_D);
}

function runStaged(data) {
  // Ctrl-A and Ctrl-B are commands to the raw REPL's line but plain data in a paste:
  // such a source is compiled from a file under the same name. Its traceback has one
  // more line (the exec) than the board's.
  mp.FS.writeFile("/.vboard/paste", Uint8Array.from(data));
  const cmd = "exec(compile(open('/.vboard/paste','rb').read(),'<stdin>','exec'))";
  for (const x of Buffer.from(cmd, "latin1")) mp.replProcessChar(x);
  withhold = [0x4f, 0x4b];
  return feed(CTRL_D);
}

function replChar(c) {
  if (paste !== null) return pasteChar(c);
  // Raw-paste request: Ctrl-E 'A' Ctrl-A on an empty raw-REPL line (pyexec checks
  // the line holds exactly Ctrl-E and the command when Ctrl-A comes). Another
  // command letter goes to the runtime, which answers "R\x00" itself.
  if (rawMode && rawLineEmpty && (pasteHeld.length || c === CTRL_E)) {
    pasteHeld.push(c);
    const want = [CTRL_E, 0x41, CTRL_A];
    if (pasteHeld.every((x, i) => x === want[i])) {
      if (pasteHeld.length < 3) return 0;
      pasteHeld = [];
      startPaste();
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
    } else {
      softResetChip();
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

let lastInput = -Infinity; // host ms of the last bytes the REPL took

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
      // A host in a conversation (a raw-paste window, an mpremote command) gets its
      // answer within a fraction of a millisecond; an idle port is looked at every 2 ms.
      sleepMs(mono() - lastInput < 50 ? 0.2 : 2);
      continue;
    }
    lastInput = mono();
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
