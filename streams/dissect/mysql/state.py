"""The states of a MySQL connection, and the events that move between them.

The client's `Phase`: the login, then one command at a time. A capture that begins late
sees a command first; a command sent before the login's OK was seen ends the login too.

Each command's `Answer`: how far the server's answer has been read. A result set is a
column count, the column definitions, an EOF unless CLIENT_DEPRECATE_EOF was agreed, then
rows until EOF / OK; more result sets follow while the status says so. LOCAL INFILE
(0xFB) makes the client send a file first. A PREPARE's OK is followed by definitions.
"""

from __future__ import annotations

from enum import Enum

from streams.dissect.skeleton import Transitions


class Phase(Enum):
    START = "start"  # nothing from the client yet
    LOGIN = "login"  # the login was sent: auth data until the server's OK or ERR
    COMMAND = "command"  # commands, one at a time


PHASES = Transitions(
    {
        (Phase.START, "login"): Phase.LOGIN,
        **{(phase, "command"): Phase.COMMAND for phase in Phase},
        (Phase.LOGIN, "login_ok"): Phase.COMMAND,
        (Phase.COMMAND, "login_ok"): Phase.COMMAND,  # COM_CHANGE_USER, or a late login OK
    }
)


class Answer(Enum):
    FIRST = "first"  # the answer's first packet: OK, ERR, column count, 0xFB, prepare OK
    INFILE = "infile"  # the client sends a file; the server answers after it
    DEFS = "defs"  # column (or prepared parameter) definitions
    DEFS_EOF = "defs_eof"  # the EOF after the definitions
    ROWS = "rows"  # rows until EOF / OK


ANSWERS = Transitions(
    {
        (Answer.FIRST, "local_infile"): Answer.INFILE,
        (Answer.FIRST, "column_count"): Answer.DEFS,
        (Answer.FIRST, "prepare_ok"): Answer.DEFS,
        (Answer.DEFS, "definitions_end"): Answer.DEFS_EOF,
        (Answer.DEFS, "definitions_end_without_eof"): Answer.ROWS,
        (Answer.DEFS_EOF, "eof"): Answer.ROWS,
        (Answer.DEFS_EOF, "row"): Answer.ROWS,  # no EOF: CLIENT_DEPRECATE_EOF after all
        **{
            (end, "more_results"): Answer.FIRST
            for end in (Answer.FIRST, Answer.INFILE, Answer.ROWS)
        },
    }
)
