"""What each command prints with ``--json``: the layouts, documented and checked.

One declaration per JSON output. ``tools/gen_cli_reference.py`` writes them into
``docs/cli.md``; ``tests/test_cli_reference.py`` runs every command with
``--json`` and checks the keys it prints against these declarations with
:func:`mismatches`, so the reference cannot drift from the code again. A help
text that names keys takes them from here (:func:`key_list`).

Floats are rounded to their unit's resolution (:func:`cellguard.units.round_json`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

SCALAR, OBJECT, OBJECTS, MAP = "scalar", "object", "objects", "map"


@dataclass(frozen=True)
class Key:
    """One key of a JSON object: its meaning and, for nested data, its own keys."""

    name: str
    doc: str
    kind: str = SCALAR  # SCALAR (or a list of scalars), OBJECT, OBJECTS (a list of them), MAP
    keys: tuple[Key, ...] = ()  # of the OBJECT, of each of the OBJECTS, of each MAP value
    optional: bool = False  # present only in some cases (doc says when)
    nullable: bool = False  # may be null


@dataclass(frozen=True)
class Output:
    """A command's JSON output."""

    command: str  # as typed after `cellguard`: "config get"
    when: str  # the options that print it
    shape: str  # OBJECT, OBJECTS (a JSON list of objects), or "lines" (one object a line)
    doc: str
    keys: tuple[Key, ...]

    def names(self) -> list[str]:
        return [k.name for k in self.keys]


def K(name: str, doc: str, *keys: Key, kind: str | None = None, optional: bool = False,
      nullable: bool = False) -> Key:
    """A key; with nested ``keys`` it is an OBJECT unless ``kind`` says otherwise."""
    return Key(name, doc, kind or (OBJECT if keys else SCALAR), tuple(keys), optional, nullable)


def key_list(command: str, when: str | None = None) -> str:
    """``out, format, rows, ...``: the top-level keys of a command's output, for help texts."""
    out = next(o for o in OUTPUTS if o.command == command and (when is None or o.when == when))
    return ", ".join(out.names())


# -- the shared pieces ---------------------------------------------------------------------
_LIFE_TOTALS = (
    K("charge_in_ah", "charge in, Ah"), K("charge_out_ah", "charge out, Ah"),
    K("energy_in_wh", "energy in, Wh"), K("energy_out_wh", "energy out, Wh"),
    K("operating_s", "operating time, s"), K("rest_s", "time at rest, s"),
    K("charging_s", "time charging, s"), K("discharging_s", "time discharging, s"),
    K("hot_idle_s", "s above the over-temperature trip, not charging"),
    K("hot_charging_s", "s above the charge over-temperature trip, charging"),
    K("cold_idle_s", "s below the under-temperature trip, not charging"),
    K("cold_charging_s", "s below the charge under-temperature trip, charging"),
    K("harmful", "harmful events, counted by kind",
      K("deep_discharge", "deep discharges"), K("overcharge", "cell over-voltage trips"),
      K("overtemperature", "over-temperature trips"),
      K("overcurrent", "over-current trips"), K("short_circuit", "short circuits")),
    K("boots", "boots"), K("watchdog_resets", "watchdog resets"),
    K("config_changes", "configuration changes"),
)
_INFO = (
    K("protocol", "protocol version MAJOR.MINOR"),
    K("firmware_version", "firmware version"),
    K("board", "board name (its board file)"),
    K("unique_id", "the MCU's unique id, hex"),
    K("chemistry", "nmc, lfp or sodium_ion"),
    K("cell_count", "cells in series"),
    K("temp_count", "temperature sensors"),
    K("capacity_ah", "rated capacity, Ah"),
    K("control_period_s", "control step period, s"),
    K("telemetry_period_s", "telemetry period, s"),
    K("cell_ov_v", "cell over-voltage trip threshold, V"),
    K("cell_uv_v", "cell under-voltage trip threshold, V"),
    K("temp_max_c", "over-temperature trip threshold, °C"),
    K("temp_min_c", "under-temperature trip threshold, °C"),
    K("charge_current_max_a", "charge over-current trip threshold, A"),
    K("discharge_current_max_a", "discharge over-current trip threshold, A"),
    K("max_frame", "largest frame the board accepts, bytes"),
    K("known_types", "message names the firmware understands (list)"),
    K("boot", "the running build: confirmed, on trial, fell back, files altered or older "
      "than the minimum version (output held open), ... (\"\" before 1.4)"),
    K("manifest_sha256", "its manifest's SHA-256, hex (\"\" when not deployed as a build)"),
    K("key_id", "the key writes need: 0, open mode (any write is taken); else the locked "
      "board's key id ([security.md](security.md))"),
)

_STATS = (
    K("uptime_ms", "board uptime, ms"),
    K("frames_ok", "frames the board received intact"),
    K("frames_bad", "frames the board dropped: bad COBS, length or payload"),
    K("crc_errors", "frames the board dropped: CRC"),
    K("oversize", "frames longer than max_frame"),
    K("unknown_types", "frames of a message type the board does not know"),
    K("naks_sent", "requests the board refused"),
    K("tx_frames", "frames the board sent"),
    K("control_steps", "control steps run"),
    K("control_overruns", "control steps that started more than a period late"),
    K("heap_free", "free heap, bytes (-1: not known, e.g. under CPython)"),
    K("tx_dropped", "frames the board dropped whole: the host was not reading"),
    K("sensor_bus", "the sensor chip's bus since boot (null: the board has none)",
      K("nacks", "transfers the chip did not acknowledge"),
      K("crc_errors", "reads whose CRC was wrong"),
      K("checksum_errors", "subcommand answers whose checksum or length was wrong"),
      K("busy_timeouts", "subcommands still busy past the driver's bound"),
      K("verify_failures", "data-memory writes that did not read back"),
      K("timeouts", "transfers that timed out (a stuck bus)"),
      K("cycles_failed", "measurement cycles that failed past the retries"),
      nullable=True),
)

_SUMMARY = (
    K("boards", "each board once, however many connections it was logged in",
      K("board", "board name"),
      K("unique_id", "unique id"),
      K("connections", "times it was connected (board rows: one per `log` run)"),
      K("board_ids", "the board ids of those connections (list)"),
      K("samples", "samples logged"),
      K("duration_s", "board time logged: the sum over its connections, s"),
      kind=OBJECTS),
    K("duration_s", "board time logged, s: per board the sum over its connections; with "
                    "several boards the longest"),
    K("samples", "samples logged, all boards"),
    K("lost", "telemetry frames lost on the link while connected"),
    K("charge_in_ah", "charge in (current > 0), Ah, trapezoid rule"),
    K("charge_out_ah", "charge out (current < 0), Ah, as a positive number"),
    K("min_cell_v", "lowest cell voltage, V", nullable=True),
    K("max_cell_v", "highest cell voltage, V", nullable=True),
    K("final_soc_pct", "SoC of the last sample, %", nullable=True),
    K("faults_seen", "fault name -> times its bit was set", kind=MAP),
    K("unplugged", "times a board's port vanished"),
    K("unplugged_s", "host seconds boards were away, in total"),
    K("restarts", "board restarts seen"),
    K("events", "FAULT_EVENTs logged"),
)

_CONFIG_ROW = (
    K("key", "the board's key (cell_ov_mv)"),
    K("value", "value in the key's wire unit (integer)"),
    K("unit", "the wire unit: mV, mA, 0.1 °C, ms, mAh, samples, or empty"),
    K("min", "lowest value the board allows now (a release follows its trip)"),
    K("max", "highest value the board allows now"),
    K("si_value", "value in SI (V, A, °C, s, Ah)"),
    K("si_unit", "the SI unit, or empty"),
    K("file_key", "the key's name in a configuration file (cell_overvoltage.trip_v)",
      optional=True),
    K("severity", "for a _severity key: warning, alarm or fault", optional=True),
)

_CHANGE = (
    K("key", "the board's key"),
    K("path", "the file's key (table.name)"),
    K("board", "the board's value, wire unit (null: the board has no such key)", nullable=True),
    K("file", "the file's value, wire unit"),
    K("board_si", "the board's value in the file's unit", nullable=True),
    K("file_si", "the file's value in the file's unit"),
    K("unit", "the file's unit (V, A, °C, s, Ah, samples, or empty)"),
    K("min", "lowest value the board allowed", nullable=True),
    K("max", "highest value the board allowed", nullable=True),
)

_EXTREMES = (
    K("min", "lowest value"), K("min_t_s", "t_s of the lowest"),
    K("max", "highest value"), K("max_t_s", "t_s of the highest"), K("mean", "mean of the samples"),
)

_BOARD_REPORT = (
    K("board_id", "board id (the log's board row: one per connection)"),
    K("board", "board name"), K("unique_id", "unique id"), K("firmware", "firmware version"),
    K("protocol", "protocol version"), K("chemistry", "chemistry"),
    K("cell_count", "cells"), K("temp_count", "temperature sensors"),
    K("capacity_ah", "rated capacity, Ah"), K("telemetry_period_s", "telemetry period, s"),
    K("port", "the port it was logged from", nullable=True),
    K("t_first_s", "first sample's t_s"), K("t_last_s", "last sample's t_s"),
    K("duration_s", "t_last_s - t_first_s"),
    K("start_utc", "host clock at the first sample", nullable=True),
    K("end_utc", "host clock at the last sample", nullable=True),
    K("samples", "samples in the selection"),
    K("lost_frames", "telemetry frames lost on the link"),
    K("missed_unplugged", "frames the board sent while unplugged"),
    K("unplugged", "times unplugged"), K("unplugged_s", "host seconds unplugged"),
    K("restarts", "board restarts"),
    K("charge_energy", "charge and energy, trapezoid rule over t_s, gaps left out",
      K("charge_in_ah", "charge in, Ah"), K("charge_out_ah", "charge out, Ah (positive)"),
      K("net_charge_ah", "in - out, Ah"), K("energy_in_wh", "energy in, Wh"),
      K("energy_out_wh", "energy out, Wh (positive)"), K("net_energy_wh", "in - out, Wh"),
      K("integrated_s", "time integrated, s"), K("skipped_s", "time in gaps left out, s"),
      K("skipped_intervals", "gaps left out"),
      K("max_interval_s", "longer intervals are gaps, s"), K("method", "how, in words")),
    K("pack", "pack voltage, current and SoC",
      K("v_min", "lowest pack voltage, V"), K("v_max", "highest pack voltage, V"),
      K("current_max_charge_a", "peak charge current, A"),
      K("current_max_discharge_a", "peak discharge current, A (positive)"),
      K("soc_start_pct", "SoC at the first sample, %"), K("soc_end_pct", "at the last, %"),
      K("soc_min_pct", "lowest SoC, %"), K("soc_max_pct", "highest SoC, %")),
    K("cells_v", "per cell, V", K("cell", "cell number from 1"), *_EXTREMES, kind=OBJECTS),
    K("imbalance", "cell spread (highest - lowest cell) per sample, mV; null with one cell",
      K("percentiles_mv", "p50, p90, p95, p99 of the spread, mV", kind=MAP),
      K("mean_mv", "mean spread, mV"), K("max_mv", "largest spread, mV"),
      K("max_t_s", "t_s of the largest"), K("interval_s", "length of each interval row, s"),
      K("intervals", "per interval", K("from_s", "start t_s"), K("to_s", "end t_s"),
        K("samples", "samples"), K("max_mv", "largest spread, mV"),
        K("max_t_s", "t_s of the largest"), K("mean_mv", "mean spread, mV"), kind=OBJECTS),
      nullable=True),
    K("temperatures_c", "per sensor, °C", K("sensor", "sensor number from 1"), *_EXTREMES,
      kind=OBJECTS),
    K("protections", "spans during which a protection's bit was set",
      K("name", "protection"), K("severity", "fault, alarm or warning"),
      K("start_s", "t_s it was first set"),
      K("end_s", "t_s it was first clear again (null: still set)", nullable=True),
      kind=OBJECTS),
    K("warnings_logged", "whether the log records alarms and warnings per sample (schema 2)"),
    K("events", "FAULT_EVENTs the board sent",
      K("board_id", "board id"), K("t_s", "t_s", nullable=True),
      K("kind", "trip, release or clear"), K("severity", "fault, alarm or warning"),
      K("fault", "the bit(s) that changed"), K("value", "the value that tripped it, wire unit",
                                               nullable=True),
      K("faults", "fault bits held (active or latched) afterwards", nullable=True),
      K("board_time_ms", "board time, ms", nullable=True),
      K("names", "protection names of fault (list)"),
      K("value_si", "value in SI units with its unit, as text"),
      kind=OBJECTS),
    K("gaps", "stretches without samples",
      K("board_id", "board id"), K("t_s", "where it was recorded"),
      K("reason", "lost frames, board restarted, unplugged or no samples"),
      K("lost", "frames missing (0: unknown)"),
      K("start_s", "last sample before (null: before the selection)", nullable=True),
      K("end_s", "first sample after (null: the run ended)", nullable=True),
      K("away_s", "host seconds unplugged", nullable=True),
      K("no_samples_s", "end_s - start_s", nullable=True),
      kind=OBJECTS),
)


OUTPUTS: tuple[Output, ...] = (
    Output("ports", "--json", OBJECTS, "one object per port", (
        K("device", "the port's path"), K("description", "what the system says it is"),
        K("hwid", "USB VID:PID and serial, when known"),
        K("by_id", "its /dev/serial/by-id/ names (list)"),
        K("status", "board, no answer, busy, missing, error or not probed"),
        K("detail", "what went wrong, for error (and what the port said, for no answer)"),
        K("board", "board name", nullable=True), K("unique_id", "unique id", nullable=True),
        K("firmware", "firmware version", nullable=True),
        K("protocol", "protocol version", nullable=True),
    )),
    Output("info", "--json", OBJECT, "the board's INFO, in SI units", _INFO),
    Output("monitor", "--json", "lines", "the view's state, every --interval and once at the end", (
        K("port", "the port"), K("board", "board name"), K("unique_id", "unique id"),
        K("firmware", "firmware version"), K("frames", "telemetry frames received"),
        K("lost", "telemetry frames missing from the sequence"),
        K("restarts", "times the sequence went back (board restarts)"),
        K("frames_per_s", "telemetry frames a second, last 10 s", nullable=True),
        K("silent_s", "seconds since the last telemetry frame"),
        K("host_crc_errors", "frames this host dropped: CRC"),
        K("host_bad_frames", "frames this host dropped: bad COBS, length or payload"),
        K("board_stats", "the board's STATS, polled every 5 s", *_STATS, nullable=True),
        K("balancing", "cells bleeding now, numbered from 1 (list; null: the firmware does not "
                       "say)", nullable=True),
        K("telemetry", "the last telemetry frame (null: none yet)",
            K("seq", "telemetry sequence number"), K("board_time_s", "board time, s"),
            K("state", "active, standby or fault"), K("soc_pct", "SoC, %"),
            K("pack_v", "pack voltage, V"), K("current_a", "current, A, + = charging"),
            K("cells_v", "cell voltages, V (list)"), K("temps_c", "temperatures, °C (list)"),
            K("faults", "faults held, active or latched (names)"),
            K("alarms", "alarms: a direction held at zero (names)"),
            K("warnings", "warnings (names)"),
            K("charge_allowed", "charge current may flow"),
            K("discharge_allowed", "discharge current may flow"), nullable=True),
        K("events", "the last five FAULT_EVENTs, as text lines (list)"),
        K("estimate", "the last ESTIMATE frame (null: none yet)",
            K("board_time_s", "board time, s"), K("mode", "ekf or coulomb"),
            K("soc_pct", "the estimator's SoC, %"),
            K("soc_std_pct", "its standard deviation (1σ), %; the view shows ± 2σ (null: the "
                             "coulomb baseline has none)", nullable=True),
            nullable=True),
    )),
    Output("log", "--json", OBJECT, "the whole log's summary (as `summary --json`) and this run",
           (*_SUMMARY,
            K("run", "each board row this run logged",
              K("board_id", "board id"), K("port", "port"), K("board", "board name"),
              K("unique_id", "unique id"), K("samples", "samples logged"),
              K("lost", "frames lost on the link"), K("gaps", "gap rows recorded"),
              K("reconnects", "times it came back on its port"),
              K("unplugged_s", "host seconds away"), K("events", "FAULT_EVENTs stored"),
              kind=OBJECTS))),
    Output("summary", "--json", OBJECT, "the log's summary", _SUMMARY),
    Output("export", "--json", OBJECT, "what was written (only with -o FILE)", (
        K("out", "the file written (-o)"), K("format", "csv, parquet or bdf"),
        K("rows", "rows written (per file)"),
        K("boards", "board ids exported (list)"), K("columns", "column names (list)"),
        K("files", "every file written (list): bdf also each cell's file and each "
                   "<file>.metadata.json"),
    )),
    Output("passport", "--json", OBJECT, "what was written", (
        K("out", "the file written"), K("format", "json, md or html"), K("board", "board name"),
        K("unique_id", "the pack's unique id"),
        K("unavailable", "model attributes the source cannot give (written as 0)"),
    )),
    Output("plot", "--json", OBJECT, "what was plotted", (
        K("files", "files written (list)"), K("board_id", "board id plotted"),
        K("board", "board name"), K("unique_id", "unique id"), K("samples", "samples plotted"),
        K("t_first_s", "first t_s"), K("t_last_s", "last t_s"),
        K("protections", "protection spans shown"), K("events", "FAULT_EVENTs shown"),
        K("gaps", "gaps shown"),
        K("estimates", "ESTIMATE rows shown: the estimator's SoC, with its ±2σ band where it "
                       "gives one"),
    )),
    Output("report", "--json or --format json", OBJECT, "every number of the report", (
        K("file", "the log"), K("generated_utc", "when the report was made"),
        K("generator", "cellguard and its version"), K("schema", "the log's schema",
                                                       nullable=True),
        K("log_created_utc", "when the log was created", nullable=True),
        K("from_s", "--from, s", nullable=True), K("to_s", "--to, s", nullable=True),
        K("boards", "one per board row (connection) selected", *_BOARD_REPORT, kind=OBJECTS),
    )),
    Output("config get", "--json", OBJECTS, "the key, as one row (also `config set`)",
           _CONFIG_ROW),
    Output("config dump", "--json", OBJECTS, "every key, one row each", _CONFIG_ROW),
    Output("config dump", "FILE --json", OBJECT, "what was written to FILE", (
        K("file", "the file"), K("keys", "keys written"), K("board", "board name"),
        K("unique_id", "unique id"),
    )),
    Output("config diff", "FILE --json", OBJECTS, "the keys whose values differ", _CHANGE),
    Output("config load", "FILE --json", OBJECT, "what was written", (
        K("changes", "the keys that differed", *_CHANGE, kind=OBJECTS),
        K("written", "keys written (list)"),
        K("refused", "keys the board refused, with the reason", *_CHANGE,
          K("reason", "what the board said, with the range allowed now"), kind=OBJECTS),
    )),
    Output("faults", "--json", OBJECT, "the board's FAULT_STATE, as protection names", (
        K("active", "conditions present now"), K("latched", "latched until cleared"),
        K("tripped", "tripped since the last clear"),
        K("alarms", "alarms (a direction held at zero)"), K("warnings", "warnings"),
    )),
    Output("events", "--json", OBJECTS, "the board's event log, oldest first", (
        K("index", "event number"), K("board_time_s", "board uptime at the event, s"),
        K("unix_time", "host clock at the event (0: the board's clock was not set)"),
        K("kind", "boot, trip, release, clear, config, time_sync, reset, second_life or "
                  "commissioned"),
        K("code", "fault bits (trip, release, clear, boot) or configuration key id"),
        K("value", "the value: tripped at (wire unit), new configuration value, time set"),
    )),
    Output("audit", "--json", OBJECT, "the board's change log and its chain's check "
           "(docs/security.md, \"The change log\")", (
        K("total", "records the board has logged ever"),
        K("oldest", "index of the oldest record the board keeps"),
        K("chain_ok", "true: the chain holds, and holds the newest record this host saw"),
        K("breaks", "where the chain breaks, in words (list; empty when it holds)"),
        K("records", "the kept records, oldest first",
            K("index", "record number"),
            K("unix_time", "Unix time of the write, s (0: the board's clock was not set)"),
            K("key_id", "the key the write came with (0: none)"),
            K("request", "the write: set_config, time_sync, clear_faults, reset, "
                         "enter_repl, commission, second_life or set_key"),
            K("result", "accepted, or the NAK error it was refused with"),
            K("config_key", "SET_CONFIG's key id, else 0"),
            K("old", "the value before (SET_CONFIG, TIME_SYNC, CLEAR_FAULTS' latched bits, "
                     "SET_KEY's key id), else 0"),
            K("new", "the value asked for or after, else 0"),
            K("repeats", "times this refusal came in a row"),
            K("previous", "hex: the first 8 bytes of the SHA-256 of the record before"),
            kind=OBJECTS),
    )),
    Output("lifetime", "--json", OBJECT, "the board's lifetime record (docs/lifetime.md)", (
        *_LIFE_TOTALS,
        K("seq", "sequence number of the newest saved record (0: none saved yet)"),
        K("layout", "the record's counter layout (1: words 0-50; 2: 0-154)"),
        K("histogram_s", "s per [SoC bin 0-20-40-60-80-100 %][temperature bin <0, 0-25, "
                         "25-45, >=45 °C]"),
        K("harmful_total", "harmful events in all (layout 2)", nullable=True),
        K("last_harmful", "the last four harmful events, oldest first (layout 2)",
          K("kind", "deep_discharge, overcharge, overtemperature, overcurrent or "
                    "short_circuit"),
          K("operating_s", "the pack's operating time at the event, s"),
          K("unix_time", "Unix time of the event (null: the board's clock was not set)",
            nullable=True),
          K("value", "lowest / highest cell (V), hottest sensor (°C) or |current| (A)"),
          K("unit", "the value's unit"), kind=OBJECTS),
        K("manufactured", "date of manufacture, Unix time (null: not given)", nullable=True),
        K("in_service", "date of putting into service, Unix time (null: not given)",
          nullable=True),
        K("identity", "pack identity (empty: not given)"),
        K("lives", "second-life resets so far (layout 2)", nullable=True),
        K("self_discharge_lost_pct", "SoC lost over long rests, % (layout 2)", nullable=True),
        K("self_discharge_gained_pct", "SoC gained over long rests (noise), %", nullable=True),
        K("self_discharge_rest_s", "the rest time those were measured over, s",
          nullable=True),
        K("snapshots", "state-of-health snapshots, oldest first: the first and the last three",
          K("unix_time", "Unix time (null: clock not set)", nullable=True),
          K("operating_s", "operating time, s"),
          K("capacity_ah", "relearned capacity, Ah (the rated one until a relearn)"),
          K("relearns", "capacity measurements so far"),
          K("r0_growth_pct", "internal resistance against new, % (100: as new; null: no "
                             "estimator)", nullable=True),
          K("soc_pct", "SoC then, %"),
          K("power_w", "10 s discharge power capability at that SoC, W (0: no estimator)"),
          K("energy_in_wh", "energy in by then, Wh"), K("energy_out_wh", "energy out, Wh"),
          kind=OBJECTS),
        K("snapshots_taken", "snapshots taken so far (layout 2)", nullable=True),
        K("equivalent_full_cycles", "charge throughput over twice the capacity at each "
                                    "save (layout 2; the board counts it)", nullable=True),
        K("deploys", "firmware deploys: boots of another build (layout 2)", nullable=True),
        K("history", "the ended lives' totals (null: the first life)", *_LIFE_TOTALS,
          nullable=True),
        K("words", "the counters as read (docs/lifetime.md)"),
    )),
    Output("commission", "--json", OBJECT, "the commissioning data the record now holds", (
        K("manufactured", "date of manufacture, Unix time (null: not given)", nullable=True),
        K("in_service", "date of putting into service, Unix time (null: not given)",
          nullable=True),
        K("identity", "pack identity (empty: not given)"),
    )),
    Output("second-life", "--json", OBJECT, "the new life's record after a second-life reset", (
        K("unique_id", "the board's unique id"),
        K("lives", "second-life resets so far"),
        K("history", "the ended lives' totals", *_LIFE_TOTALS, nullable=True),
    )),
    Output("build", "--json", OBJECT, "what was built, its footprint and heap", (
        K("out", "the output folder"), K("board", "board name"),
        K("mcu", "the board's MCU"), K("arch", "mpy-cross -march"),
        K("sha256", "SHA-256 over the set of files (the manifest's; INFO reports it)"),
        K("firmware_version", "firmware version"), K("protocol", "protocol MAJOR.MINOR"),
        K("files", "each file of the build but the manifest",
          K("path", "path on the board's flash"), K("size", "bytes"),
          K("sha256", "SHA-256 of the file"), kind=OBJECTS),
        K("left_out", "package modules this board never runs (list)"),
        K("flash_bytes", "bytes of every file, manifest included"),
        K("flash_blocks", "4 KB blocks the files take on LittleFS (up to 512 B inline)"),
        K("build_s", "time the build took, s"),
        K("heap", "the control firmware's heap, measured under MicroPython",
          K("high_water", "largest live heap during a drive cycle, B"),
          K("boot", "live heap once the firmware is built, B"),
          K("names_room", "interned names before the next pool"),
          K("cells", "cells measured"), K("temps", "sensors measured"),
          K("source", "where the figure comes from"),
          K("estimator_note", "what the state estimator adds, if the board runs it",
            nullable=True), nullable=True),
        K("heap_error", "why the heap was not measured", optional=True),
        K("signed_by", "id of the signing key whose signature is in manifest.sig (null: "
                       "unsigned, no signing key on this host)", nullable=True),
    )),
    Output("deploy", "--json", OBJECT, "what the deploy changed and how the board came back", (
        K("board", "board name"), K("port", "the port"),
        K("result", "deployed, unchanged (the board ran it already), fell_back or dry_run"),
        K("slot", "the slot the build went into (a or b)"),
        K("previous_slot", "the slot the board ran before (\"\": none, or the root)"),
        K("manifest_sha256", "the deployed build's manifest hash"),
        K("firmware_version", "the deployed firmware version"),
        K("previous_manifest_sha256", "what INFO reported before (\"\": no firmware ran)"),
        K("reached_by", "enter_repl (the firmware ran) or ctrl_c (the board sat at its REPL)"),
        K("boot", "INFO's boot status after the deploy (\"\" for a dry run)"),
        K("files_sent", "files sent over the link"),
        K("files_copied_on_board", "files copied on the board from the other slot"),
        K("files_removed", "files removed from the slot"),
        K("files_unchanged", "files the board held already"),
        K("bytes_sent", "bytes sent over the link"),
        K("seconds", "from the build to HELLO, s"),
        K("changes", "each change, in the order made",
          K("action", "send, copy or remove"), K("path", "path on the board"),
          K("size", "bytes"), K("source", "copy: the board's file with those bytes"),
          kind=OBJECTS),
        K("message", "why it fell back, or what else to know (\"\" when nothing)"),
        K("manufactured", "the lifetime record's date of manufacture, Unix time (null: "
                          "--manufactured not given)", nullable=True),
        K("signed_by", "id of the trusted key whose signature over the manifest was checked "
                       "(null: none, deployed with --allow-unsigned)", nullable=True),
        K("locked_with", "the board's key id after --lock (null: --lock not given)",
          nullable=True),
    )),
    Output("stats", "--json", OBJECT, "the board's link and control-loop counters", _STATS),
    Output("characterize", "--json", OBJECT, "the fitted model and how well it replays", (
        K("cell", "the cell model, as written to --out (docs/cell-model.md)",
          K("format", "cellguard-cell"), K("version", "format version"), K("name", "name"),
          K("chemistry", "chemistry"), K("capacity_ah", "capacity, Ah"),
          K("soc_pct", "SoC breakpoints, %"), K("temps_c", "temperatures, °C"),
          K("ocv_v", "[temperature][soc] OCV, V"), K("r0_ohm", "R0, Ω"),
          K("r1_ohm", "R1, Ω"), K("tau1_s", "tau1, s"), K("r2_ohm", "R2, Ω"),
          K("tau2_s", "tau2, s"), K("source", "where the model came from")),
        K("capacity_source", "where the capacity came from"),
        K("replays", "one per --validate trace",
          K("trace", "the trace file"), K("rms_mv", "voltage error RMS, mV"),
          K("max_mv", "largest voltage error, mV"), K("rows", "samples replayed"),
          K("initial_soc_pct", "SoC the replay started from, %"), kind=OBJECTS),
    )),
)
"""Every JSON output of the command line."""


def outputs_of(command: str) -> list[Output]:
    """The outputs of a command (``config`` gives those of every config action)."""
    return [o for o in OUTPUTS if o.command == command or o.command.startswith(command + " ")]


def mismatches(output: Output | Iterable[Key], data: Any, where: str = "") -> list[str]:
    """How ``data`` (one printed object, or a list for an OBJECTS output) differs from the
    declaration: missing keys, keys it does not declare, nested the same way."""
    if isinstance(output, Output):
        if output.shape == OBJECTS:
            if not isinstance(data, list):
                return [f"{where or output.command}: a list expected"]
            return [m for i, item in enumerate(data)
                    for m in mismatches(output.keys, item, f"{where}[{i}]")]
        return mismatches(output.keys, data, where)
    keys = tuple(output)
    if not isinstance(data, dict):
        return [f"{where or '.'}: an object expected, not {type(data).__name__}"]
    out = []
    declared = {k.name: k for k in keys}
    for name in data:
        if name not in declared:
            out.append(f"{where}.{name}: printed but not documented")
    for k in keys:
        if k.name not in data:
            if not k.optional:
                out.append(f"{where}.{k.name}: documented but not printed")
            continue
        value = data[k.name]
        if value is None:
            if not k.nullable:
                out.append(f"{where}.{k.name}: null, documented as never null")
            continue
        if k.kind == OBJECT:
            out += mismatches(k.keys, value, f"{where}.{k.name}")
        elif k.kind == OBJECTS:
            if not isinstance(value, list):
                out.append(f"{where}.{k.name}: a list expected")
            else:
                for i, item in enumerate(value):
                    out += mismatches(k.keys, item, f"{where}.{k.name}[{i}]")
        elif k.kind == MAP:
            if not isinstance(value, dict):
                out.append(f"{where}.{k.name}: an object expected")
            elif k.keys:
                for name, item in value.items():
                    out += mismatches(k.keys, item, f"{where}.{k.name}.{name}")
        elif isinstance(value, dict):
            out.append(f"{where}.{k.name}: an object, documented as a value")
    return out


def render_markdown(output: Output) -> list[str]:
    """The layout as Markdown lines: a bullet list, nested keys indented."""
    shape = {OBJECT: "one JSON object", OBJECTS: "a JSON list of objects",
             "lines": "one JSON object a line"}[output.shape]
    lines = [f"**JSON**: `cellguard {output.command} {output.when}` prints {shape}: {output.doc}."]
    if output.shape == OBJECTS:
        lines[0] = lines[0][:-1] + "; each has:"
    lines.append("")
    lines += _key_lines(output.keys, 0)
    return lines


def _key_lines(keys: Iterable[Key], depth: int) -> list[str]:
    lines = []
    for k in keys:
        notes = []
        if k.optional:
            notes.append("not always present")
        if k.nullable and "null" not in k.doc:
            notes.append("may be null")
        tail = f" ({'; '.join(notes)})" if notes else ""
        what = {OBJECTS: " — a list of objects with:", OBJECT: " — an object with:",
                MAP: " — an object of name: value"}.get(k.kind, "")
        if k.kind == MAP and k.keys:
            what += ", each value with:"
        lines.append(f"{'  ' * depth}- `{k.name}`: {k.doc}{tail}{what}")
        if k.keys:
            lines += _key_lines(k.keys, depth + 1)
    return lines
