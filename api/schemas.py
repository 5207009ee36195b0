"""Marshmallow schemas shared by the API's blueprints."""

from __future__ import annotations

from marshmallow import Schema, fields


class ProblemSchema(Schema):
    type = fields.String()
    title = fields.String()
    status = fields.Integer()
    detail = fields.String()
    errors = fields.Dict(keys=fields.String(), values=fields.Raw())


class HealthSchema(Schema):
    status = fields.String(required=True)
    engine = fields.String(required=True, metadata={"description": "up or down"})
    node = fields.String(metadata={"description": "a cluster node's name (docs/cluster.md)"})
    redis = fields.String(metadata={
        "description": "a cluster node's shared counters: up, down (admitting by its share "
                       "of each capacity), rebuilding (Redis lost its data), none"})
    database = fields.String(required=True, metadata={
        "description": "up or down: whether the API reaches the database (down: writes "
                       "answer 503, calls go on and the engine keeps their CDRs until it "
                       "is back)"})


class ParameterSchema(Schema):
    name = fields.String(required=True)
    value = fields.Raw(required=True, allow_none=True)
    default = fields.Raw(required=True, allow_none=True)
    kind = fields.String(required=True)
    unit = fields.String(required=True)
    minimum = fields.Float(allow_none=True)
    maximum = fields.Float(allow_none=True)
    choices = fields.List(fields.Raw())
    group = fields.String(required=True)
    description = fields.String(required=True)
    live = fields.Boolean(required=True)


class ParameterListSchema(Schema):
    items = fields.List(fields.Nested(ParameterSchema), required=True)


class ParameterUpdateSchema(Schema):
    value = fields.Raw(required=True, allow_none=True)


class GarbageCollectionSchema(Schema):
    full_collections = fields.Integer(required=True)
    skipped_live_growth = fields.Integer(required=True, metadata={
        "description": "times memory had grown enough for a full collection but the live "
                       "SIP state (transactions, calls) had grown with it, so none ran"})
    next_at_factor = fields.Integer(required=True, metadata={
        "description": "the next full collection when resident memory has grown this many "
                       "times since the last"})
    last_full_pause_seconds = fields.Float(required=True)
    last_full_collected = fields.Integer(required=True)
    resident_baseline_bytes = fields.Integer(required=True)
    python_allocated_blocks = fields.Integer(required=True, metadata={
        "description": "memory blocks Python's allocator has handed out (live objects); "
                       "resident memory growing while this stays flat is fragmentation"})
    resident_bytes = fields.Integer(required=True, metadata={
        "description": "the engine process's resident memory now"})
    heap_trims = fields.Integer(required=True, metadata={
        "description": "times the C heap's free pages were given back to the kernel "
                       "(once a minute)"})
    last_trim_pause_seconds = fields.Float(required=True)
    last_trim_released_bytes = fields.Integer(required=True, metadata={
        "description": "resident memory the last trim gave back"})


class DbWriterSchema(Schema):
    pending = fields.Integer(required=True, metadata={
        "description": "CDR and state writes queued for the database, not yet applied"})
    written = fields.Integer(required=True)
    failed = fields.Integer(required=True, metadata={
        "description": "writes dropped after repeated errors (a locked database is waited "
                       "for, not counted here)"})
    waiting = fields.Boolean(required=True, metadata={
        "description": "the database refuses writes now (locked, or out of reach): they wait"})
    spilled = fields.Integer(required=True, metadata={
        "description": "writes moved from memory to files while the database was away"})
    spill_files = fields.Integer(required=True, metadata={
        "description": "those files not applied yet (they are, oldest first, once it is back)"})


class DispatcherSchema(Schema):
    received = fields.Integer(required=True, metadata={
        "description": "SIP UDP datagrams read by the dispatcher"})
    read_errors = fields.Integer(required=True)
    no_call_id = fields.Integer(required=True, metadata={
        "description": "datagrams without a readable Call-ID (sent to worker 0, whose "
                       "parser counts them)"})
    dispatched = fields.List(fields.Integer(), required=True, metadata={
        "description": "datagrams passed to each signalling worker, worker 0 first"})
    dropped = fields.List(fields.Integer(), required=True, metadata={
        "description": "datagrams lost because a worker's channel was full"})
    running = fields.Boolean(required=True)


class SignallingSchema(Schema):
    workers = fields.Integer(required=True, metadata={
        "description": "engine processes sharing SIP by Call-ID (--signalling-workers)"})
    dispatcher = fields.Nested(DispatcherSchema, required=True, allow_none=True, metadata={
        "description": "null with one worker: the engine reads the SIP socket itself"})
    restarts = fields.List(fields.Integer(), required=True, metadata={
        "description": "times each of workers 1..N-1 was started again after exiting"})


class EngineStatusSchema(Schema):
    uptime = fields.Float(required=True)
    sip_listen = fields.String(required=True)
    params = fields.Dict(keys=fields.String(), values=fields.Raw(allow_none=True), required=True)
    params_loaded_at = fields.Float(required=True)
    config_reloads = fields.Integer(required=True)
    mapping_gateways = fields.Integer(required=True)
    routing_gateways = fields.Integer(required=True)
    gc = fields.Nested(GarbageCollectionSchema, required=True)
    db_writer = fields.Nested(DbWriterSchema, required=True)
    signalling = fields.Nested(SignallingSchema, required=True)
    # Frames refused between processes, by channel (b2bua/ipc.py): a bug, never traffic.
    malformed_frames = fields.Dict(keys=fields.String(), values=fields.Integer(),
                                   required=True)
    cluster = fields.Dict(keys=fields.String(), values=fields.Raw(allow_none=True),
                          allow_none=True, metadata={
                              "description": "this node's view of the cluster (docs/"
                                             "cluster.md); null for a switch on its own"})


_PAGES: dict[str, type[Schema]] = {}


def page_schema(item: type[Schema]) -> type[Schema]:
    """A ``{"items": [...], "next_after_id": N}`` page of ``item`` (one class per item)."""
    name = item.__name__.removesuffix("Schema") + "Page"
    if name not in _PAGES:
        _PAGES[name] = Schema.from_dict(
            {
                "items": fields.List(fields.Nested(item), required=True),
                "next_after_id": fields.Integer(
                    allow_none=True, required=True,
                    metadata={"description": "pass as after_id for the next page; null at end"},
                ),
            },
            name=name,
        )
    return _PAGES[name]
