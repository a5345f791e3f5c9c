"""Python's grpcio (from PyPI) against our tonic server behind the exactly-once layer.

Usage: python3 grpcio_vs_tonic_server.py PATH/TO/grpc_server [CALLS]

A client no one here wrote: grpcio's generic calls (no generated code; the `Note`
message, `string text = 1; uint64 run = 2;`, encoded by hand), sending the session and
request numbers as metadata by hand. It creates a session (metadata `new`: an empty
message, the id in the initial metadata), calls `Echo` numbered 1..CALLS, and every
third call it gives up on at once (its channel closed while the call is in flight, as
a lost connection) and sends again on a new channel with the same number. The server
runs calls only for this client, so call i must be answered by run i whatever
happened to its copies: anything else is a duplicate or a loss. Then: a resend is
answered with the first answer's bytes and trailers; `Fail`'s FAILED_PRECONDITION is
replayed alike; a stale number is ALREADY_EXISTS, an unknown session NOT_FOUND; a
streaming `Watch` passes through un-numbered; number 0 ends the session.

Run in a venv under target/ that it makes itself (pip install grpcio). Without python's
venv or pip it says SKIPPED and exits 0, or exits 1 when CI=true.
"""

import os
import subprocess
import sys

VENV = os.path.join("target", "grpcio-venv")


def skip_or_fail(why: str) -> None:
    if os.environ.get("CI") == "true":
        print(f"FAIL: {why} (CI=true: the grpcio interop must run)")
        sys.exit(1)
    print(f"*** SKIPPED: grpcio interop: {why} ***")
    sys.exit(0)


def in_venv() -> None:
    """Re-runs this script in the venv with grpcio, made first if needed."""
    python = os.path.join(VENV, "bin", "python")
    if os.path.abspath(sys.prefix) == os.path.abspath(VENV):
        return
    if not os.path.exists(python):
        made = subprocess.run([sys.executable, "-m", "venv", VENV])
        if made.returncode != 0:
            skip_or_fail("python3 -m venv failed (is python3-venv installed?)")
    has = subprocess.run([python, "-c", "import grpc"], capture_output=True)
    if has.returncode != 0:
        pip = [python, "-m", "pip", "install", "--quiet", "grpcio"]
        if subprocess.run(pip).returncode != 0:
            skip_or_fail("pip install grpcio failed")
    os.execv(python, [python] + sys.argv)


in_venv()

import grpc  # noqa: E402

SESSION = "exactly-once-session"
REQUEST = "exactly-once-request"
ERROR = "exactly-once-error"
ECHO, FAIL, WATCH = "/notes.Notes/Echo", "/notes.Notes/Fail", "/notes.Notes/Watch"


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def note(text: str, run: int = 0) -> bytes:
    data = text.encode()
    out = b"\x0a" + varint(len(data)) + data
    return out + (b"\x10" + varint(run) if run else b"")


def read_note(data: bytes) -> tuple:
    text, run, i = "", 0, 0
    while i < len(data):
        key = data[i]
        i += 1
        value = 0
        shift = 0
        while True:
            byte = data[i]
            i += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        if key == 0x0A:
            text = data[i : i + value].decode()
            i += value
        elif key == 0x10:
            run = value
        else:
            raise ValueError(f"unexpected field key {key}")
    return text, run


def check(ok: bool, what: str) -> None:
    if not ok:
        print(f"FAIL: {what}")
        sys.exit(1)


def meta(pairs) -> dict:
    return {k: v for k, v in pairs or ()}


server_bin = sys.argv[1]
calls = int(sys.argv[2]) if len(sys.argv) > 2 else 300
server = subprocess.Popen(
    [server_bin, "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
)
try:
    addr = server.stdout.readline().strip()
    check(addr.startswith("127.0.0.1:"), f"bad address line {addr!r}")
    channel = grpc.insecure_channel(addr)
    echo = channel.unary_unary(ECHO)

    answer, call = echo.with_call(b"", metadata=[(SESSION, "new")], timeout=10)
    check(answer == b"", f"the creation is an empty message, got {answer!r}")
    session = meta(call.initial_metadata()).get(SESSION)
    check(session is not None and len(session) == 16, f"bad session id {session!r}")

    given_up = 0
    for i in range(1, calls + 1):
        numbered = [(SESSION, session), (REQUEST, str(i))]
        if i % 3 == 0:
            # Sent, then the connection is gone before the answer: a new channel and
            # the same number, as a client retrying by hand would.
            future = echo.future(note(f"call {i}"), metadata=numbered, timeout=10)
            channel.close()
            future.cancel()
            given_up += 1
            channel = grpc.insecure_channel(addr)
            echo = channel.unary_unary(ECHO)
        answer = None
        for attempt in range(50):
            try:
                answer = echo(note(f"call {i}"), metadata=numbered, timeout=10)
                break
            except grpc.RpcError as e:
                # UNAVAILABLE: nothing ran (busy while the lost copy still runs, or the
                # connection): the same number again.
                check(e.code() == grpc.StatusCode.UNAVAILABLE, f"call {i}: {e}")
        check(answer is not None, f"call {i} never answered")
        text, run = read_note(answer)
        check(text == f"call {i}", f"call {i} answered {text!r}")
        check(run == i, f"call {i} answered by run {run}: a duplicate or a loss")

    # A resend is the first answer, bytes and trailers.
    numbered = [(SESSION, session), (REQUEST, str(calls + 1))]
    first, first_call = echo.with_call(note("again"), metadata=numbered, timeout=10)
    resent, resent_call = echo.with_call(note("again"), metadata=numbered, timeout=10)
    check(first == resent, "the resend's message is the first's")
    trailers = meta(first_call.trailing_metadata())
    check(trailers == meta(resent_call.trailing_metadata()), "the resend's trailers")
    check(trailers.get("notes-run") == str(calls + 1), f"trailers {trailers}")

    # The service's error, first and replayed.
    fail = channel.unary_unary(FAIL)
    numbered = [(SESSION, session), (REQUEST, str(calls + 2))]
    seen = []
    for _ in range(2):
        try:
            fail(note("x"), metadata=numbered, timeout=10)
            check(False, "Fail answered OK")
        except grpc.RpcError as e:
            seen.append((e.code(), e.details(), meta(e.trailing_metadata()).get("notes-run")))
    check(seen[0] == (grpc.StatusCode.FAILED_PRECONDITION, "refused x", str(calls + 2)), f"{seen}")
    check(seen[0] == seen[1], f"the replayed error is the first: {seen}")

    # The layer's refusals.
    def refused(path, metadata):
        try:
            channel.unary_unary(path)(note("late"), metadata=metadata, timeout=10)
        except grpc.RpcError as e:
            return e.code(), meta(e.trailing_metadata()).get(ERROR)
        return None

    stale = refused(ECHO, [(SESSION, session), (REQUEST, "1")])
    check(stale == (grpc.StatusCode.ALREADY_EXISTS, "stale"), f"stale: {stale}")
    unknown = refused(ECHO, [(SESSION, "00000000000000ab"), (REQUEST, "1")])
    check(unknown == (grpc.StatusCode.NOT_FOUND, "unknown-session"), f"unknown: {unknown}")

    # A streaming call, un-numbered, passes through.
    watch = channel.unary_stream(WATCH)
    notes = [read_note(m)[0] for m in watch(note("w", 3), timeout=10)]
    check(notes == ["w 1", "w 2", "w 3"], f"Watch: {notes}")

    # Number 0 ends the session.
    ended = echo(b"", metadata=[(SESSION, session), (REQUEST, "0")], timeout=10)
    check(ended == b"", "the end is an empty message")
    gone = refused(ECHO, [(SESSION, session), (REQUEST, str(calls + 3))])
    check(gone == (grpc.StatusCode.NOT_FOUND, "unknown-session"), f"after the end: {gone}")

    channel.close()
    print(
        f"grpcio {grpc.__version__} vs tonic server: {calls} calls, each run once "
        f"({given_up} given up and sent again); resend, error replay, refusals, "
        "streaming and session end: ok"
    )
finally:
    server.kill()
    server.wait()
