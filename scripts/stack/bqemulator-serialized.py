"""Starts bqemulator with every use of its one DuckDB connection serialised.

bqemulator 1.4.0 keeps a single DuckDB connection for the whole process and uses it from three
places at once: REST handlers on the event loop, REST handlers FastAPI runs in its thread pool, and
the Storage Write API's gRPC handler threads. It serialises only the gRPC writes among themselves.
A DuckDB connection is not safe for concurrent use: a REST query while Storage Write appends run
failed with "Attempting to execute an unsuccessful or closed pending query result", and a dataset
delete during an append hung both ports for good (txstream's fault suite polls the table while its
consumers append). This wrapper makes one REST request or one Storage Write handler step hold the
connection at a time, then runs bqemulator's own command line unchanged.

It patches bqemulator's internals by name and checks that every name is there, so an emulator
version without them fails at start-up instead of running unprotected.
"""

import asyncio
import json
import os
import re
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import grpc.aio

import bqemulator.server as server
from bqemulator.cli import main
from bqemulator.grpc_api import write_servicer
from bqemulator.versioning import snapshots

# Taken first, before any lock of bqemulator's own, by the two paths that run DuckDB off the event
# loop: REST requests (FastAPI runs sync endpoints in a thread pool) and Storage Write appends (gRPC
# streaming handlers run in threads). Never waited for on the event loop itself: bqemulator runs its
# unary gRPC handlers (CreateWriteStream, GetWriteStream, ...) and its async REST endpoints there, and
# a REST request holding the lock needs the loop to finish. Those unary calls are rare (one
# CreateWriteStream per partition and table) and are left as they are.
LOCK = threading.RLock()


def _per_request(fn):
    """AppendRows is a bidirectional stream open for a connection's lifetime: the lock is held from a
    request's arrival until its answer is yielded or the next request is awaited, never while waiting
    for the client (the wait goes through the event loop)."""

    def wrapper(self, request_iterator, context):
        held = False

        def requests():
            nonlocal held
            it = iter(request_iterator)
            while True:
                if held:
                    LOCK.release()
                    held = False
                try:
                    request = next(it)
                except StopIteration:
                    return
                LOCK.acquire()
                held = True
                yield request

        try:
            for response in fn(self, requests(), context):
                if held:
                    LOCK.release()
                    held = False
                yield response
        finally:
            if held:
                LOCK.release()

    wrapper.__name__ = fn.__name__
    return wrapper


handler = write_servicer.BigQueryWriteHandler
if not hasattr(handler, "_handle_append_rows") or not hasattr(server, "create_app"):
    sys.exit("bqemulator-serialized: this bqemulator lacks _handle_append_rows or server.create_app; update the wrapper")
handler._handle_append_rows = _per_request(handler._handle_append_rows)

# The REST side takes the same lock for a whole request. It is acquired and released on one
# dedicated thread (an RLock belongs to the thread that took it), never on the event loop, which must
# keep running while a gRPC step holds the lock; an asyncio lock queues REST requests among themselves.
_holder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bqemu-serial")


# tables.patch/update as BigQuery answers them, which bqemulator 1.4.0 does not: a request whose
# If-Match names an older etag is refused with 412, and a schema that leaves out a column the table
# has is refused with 400 (BigQuery never drops a column through a patch). bqemulator applies both,
# so two consumer members adding columns at once could drop each other's. Checked while the request
# holds the lock, so nothing changes the table between the check and the patch. A patch that adds
# columns also adds them to the emulator's own table (_add_columns), which bqemulator leaves out.
_TABLE_PATH = re.compile(r"^/bigquery/v2/projects/[^/]+/datasets/[^/]+/tables/[^/]+$")


async def _body(receive):
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def _get(app, scope):
    """The table's current metadata through the app itself, or None."""
    sent = {"status": 0, "body": []}

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        if message["type"] == "http.response.start":
            sent["status"] = message["status"]
        elif message["type"] == "http.response.body":
            sent["body"].append(message.get("body", b""))

    get_scope = dict(scope, method="GET", query_string=b"", headers=[
        (k, v) for k, v in scope.get("headers", []) if k.lower() not in (b"content-length", b"content-type", b"if-match")
    ])
    await app(get_scope, receive, send)
    if sent["status"] != 200:
        return None
    return json.loads(b"".join(sent["body"]) or b"{}")


async def _refuse(send, status, reason, message):
    body = json.dumps({"error": {"code": status, "message": message, "errors": [{"reason": reason, "message": message}]}}).encode()
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})


async def _checked_table_write(app, scope, receive, send):
    body = await _body(receive)
    current = await _get(app, scope)
    if current is not None:
        if_match = dict(scope.get("headers", [])).get(b"if-match")
        if if_match is not None and if_match.decode() != current.get("etag"):
            return await _refuse(send, 412, "conditionNotMet", "Precondition check failed.")
        try:
            wanted = json.loads(body or b"{}").get("schema")
        except ValueError:
            wanted = None
        if isinstance(wanted, dict) and isinstance(wanted.get("fields"), list):
            names = {str(f.get("name", "")).lower() for f in wanted["fields"] if isinstance(f, dict)}
            for f in current.get("schema", {}).get("fields", []):
                if f.get("name", "").lower() not in names:
                    return await _refuse(send, 400, "invalid", f"Provided Schema does not match Table. Field {f.get('name')} is missing in new schema")
    replayed = False

    async def replay():
        nonlocal replayed
        if replayed:
            return await receive()
        replayed = True
        return {"type": "http.request", "body": body, "more_body": False}

    status = {"code": 0}

    async def observed(message):
        if message["type"] == "http.response.start":
            status["code"] = message["status"]
        await send(message)

    await app(scope, replay, observed)
    if status["code"] == 200 and current is not None:
        await _add_columns(app, scope, current, wanted)


async def _add_columns(app, scope, current, wanted):
    """bqemulator's tables.patch changes the table's metadata only: its DuckDB table keeps the old
    columns, so queries miss the new ones and an insert carrying them fails. BigQuery adds them to the
    table itself; an ALTER TABLE per added column (the emulator takes one per statement) does here."""
    if not isinstance(wanted, dict) or not isinstance(wanted.get("fields"), list):
        return
    have = {str(f.get("name", "")).lower() for f in current.get("schema", {}).get("fields", [])}
    _, project, _, dataset, _, table = scope["path"].split("/")[3:9]
    for f in wanted["fields"]:
        name = str(f.get("name", ""))
        kind = str(f.get("type", ""))
        if name.lower() in have or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) or not re.fullmatch(r"[A-Z0-9]+", kind):
            continue
        query = {"query": f"ALTER TABLE `{dataset}.{table}` ADD COLUMN IF NOT EXISTS `{name}` {kind}", "useLegacySql": False}
        body = json.dumps(query).encode()
        sent = {"status": 0, "body": []}

        async def receive(body=body):
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message, sent=sent):
            if message["type"] == "http.response.start":
                sent["status"] = message["status"]
            elif message["type"] == "http.response.body":
                sent["body"].append(message.get("body", b""))

        headers = [(k, v) for k, v in scope.get("headers", []) if k.lower() not in (b"content-length", b"if-match")]
        headers.append((b"content-length", str(len(body)).encode()))
        await app(dict(scope, method="POST", path=f"/bigquery/v2/projects/{project}/queries", raw_path=None, query_string=b"", headers=headers), receive, send)
        if sent["status"] != 200:
            print(f"bqemulator-serialized: ALTER TABLE {dataset}.{table} ADD COLUMN {name} failed: {b''.join(sent['body'])[:300]!r}", file=sys.stderr)


class SerializedRequests:
    def __init__(self, app):
        self.app = app
        self.queue = None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if self.queue is None:
            self.queue = asyncio.Lock()
        loop = asyncio.get_running_loop()
        async with self.queue:
            await loop.run_in_executor(_holder, LOCK.acquire)
            try:
                if scope["method"] in ("PATCH", "PUT") and _TABLE_PATH.match(scope["path"]):
                    return await _checked_table_write(self.app, scope, receive, send)
                return await self.app(scope, receive, send)
            finally:
                await loop.run_in_executor(_holder, LOCK.release)


# bqemulator 1.4.0 keeps time travel by copying the whole table into a new snapshot table after every
# write (SnapshotManager.record_change -> capture, kind AUTO: CREATE TABLE ... AS SELECT * FROM the
# table), under the write lock and kept for time_travel_retention_days. So each append costs the
# table's size, and a stream of small appends costs the square of it: in the cluster suite's rolling
# restart the Storage Write sink's per-partition appends (a few rows each after a rebalance) kept the
# emulator at full CPU copying the fact table, both consumer members waited minutes for answers, and
# the drain timed out (py-spy showed every gRPC thread in create_snapshot). BigQuery's time travel
# costs a write nothing, and txstream never reads FOR SYSTEM_TIME AS OF, so the automatic snapshots
# are skipped; the change event is still published (query cache, materialized views), and snapshots
# asked for explicitly (kind USER) are still taken. BQEMU_AUTO_SNAPSHOTS=1 brings the copies back.
if not hasattr(snapshots.SnapshotManager, "capture") or not hasattr(snapshots.SnapshotManager, "record_change"):
    sys.exit("bqemulator-serialized: this bqemulator lacks SnapshotManager.capture/record_change; update the wrapper")
if os.environ.get("BQEMU_AUTO_SNAPSHOTS") != "1":
    _capture = snapshots.SnapshotManager.capture

    def _capture_asked_only(self, project_id, dataset_id, table_id, *, kind="AUTO"):
        if kind == "AUTO":
            return None
        return _capture(self, project_id, dataset_id, table_id, kind=kind)

    snapshots.SnapshotManager.capture = _capture_asked_only


_create_app = server.create_app


def _create_serialized_app(context):
    app = _create_app(context)
    app.add_middleware(SerializedRequests)
    return app


server.create_app = _create_serialized_app

# A thread pool of its own for the gRPC handlers. bqemulator leaves grpc.aio to run its sync handlers
# on the event loop's default executor, min(32, cores + 4) threads (6 on a 2-core machine), and every
# open AppendRows call holds one. A client that dies while its call is busy (SIGKILLed while appends
# flow) loses its thread for good: the handler's wait for the next request never returns (seen with
# bqemulator 1.4.0 and grpcio 1.85.3, also without this wrapper; a client killed while its call sits
# idle frees it). After six such deaths no AppendRows call was served any more, by any client, while
# REST went on answering: the fault suite's SIGKILLs of members wedged the stack's emulator. Each lost
# thread only waits, so a large pool keeps the emulator serving through hundreds of kills
# (BQEMU_GRPC_THREADS, default 512); a restart of the emulator frees them all.
_GRPC_THREADS = int(os.environ.get("BQEMU_GRPC_THREADS", "512"))
_aio_server = grpc.aio.server


def _server_with_own_pool(*args, **kwargs):
    kwargs.setdefault(
        "migration_thread_pool",
        ThreadPoolExecutor(max_workers=_GRPC_THREADS, thread_name_prefix="bqemu-grpc"),
    )
    return _aio_server(*args, **kwargs)


grpc.aio.server = _server_with_own_pool

if __name__ == "__main__":
    sys.argv[0] = "bqemulator"
    sys.exit(main())
