# cellguard firmware entry point on a board: see cellguard_fw/board_main.py.
from cellguard_fw.board_main import run

run()
