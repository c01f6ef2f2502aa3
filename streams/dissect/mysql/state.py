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


class Step(Enum):
    """What moves the client's `Phase`."""

    LOGIN = "login"
    COMMAND = "command"
    LOGIN_OK = "login_ok"


PHASES = Transitions(
    {
        Phase.START: {Step.LOGIN: Phase.LOGIN, Step.COMMAND: Phase.COMMAND},
        Phase.LOGIN: {Step.COMMAND: Phase.COMMAND, Step.LOGIN_OK: Phase.COMMAND},
        # COM_CHANGE_USER, or a late login OK
        Phase.COMMAND: {Step.COMMAND: Phase.COMMAND, Step.LOGIN_OK: Phase.COMMAND},
    }
)


class Answer(Enum):
    FIRST = "first"  # the answer's first packet: OK, ERR, column count, 0xFB, prepare OK
    INFILE = "infile"  # the client sends a file; the server answers after it
    DEFS = "defs"  # column (or prepared parameter) definitions
    DEFS_EOF = "defs_eof"  # the EOF after the definitions
    ROWS = "rows"  # rows until EOF / OK


class Read(Enum):
    """What moves a command's `Answer`."""

    LOCAL_INFILE = "local_infile"
    COLUMN_COUNT = "column_count"
    PREPARE_OK = "prepare_ok"
    DEFINITIONS_END = "definitions_end"
    DEFINITIONS_END_WITHOUT_EOF = "definitions_end_without_eof"
    EOF = "eof"
    ROW = "row"
    MORE_RESULTS = "more_results"


_MORE = {Read.MORE_RESULTS: Answer.FIRST}
ANSWERS = Transitions(
    {
        Answer.FIRST: {
            Read.LOCAL_INFILE: Answer.INFILE,
            Read.COLUMN_COUNT: Answer.DEFS,
            Read.PREPARE_OK: Answer.DEFS,
            **_MORE,
        },
        Answer.INFILE: _MORE,
        Answer.DEFS: {
            Read.DEFINITIONS_END: Answer.DEFS_EOF,
            Read.DEFINITIONS_END_WITHOUT_EOF: Answer.ROWS,
        },
        # a row with no EOF: CLIENT_DEPRECATE_EOF after all
        Answer.DEFS_EOF: {Read.EOF: Answer.ROWS, Read.ROW: Answer.ROWS},
        Answer.ROWS: _MORE,
    }
)
