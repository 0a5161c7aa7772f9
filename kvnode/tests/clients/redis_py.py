"""redis-py against a raftkv cluster: run by kvnode/tests/clients.rs.

Usage: redis_py.py LEADER_PORT FOLLOWER_PORT

Every check raises on failure (the process exits non-zero with the traceback); the last
line printed is the number of checks that passed.
"""

import multiprocessing
import sys
import time
import uuid

import redis
from redis.exceptions import ResponseError

LEADER, FOLLOWER = int(sys.argv[1]), int(sys.argv[2])
WORKERS = 4
INCREMENTS = 25
checks = 0


def check(condition, what):
    global checks
    if not condition:
        raise AssertionError(what)
    checks += 1


def client(port, **options):
    return redis.Redis(host="127.0.0.1", port=port, socket_timeout=10, **options)


def eventually(read, expected, what, timeout=5.0):
    """A follower's own state (INFO keyspace) trails the leader by what it has not applied."""
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if value == expected or time.monotonic() > deadline:
            check(value == expected, f"{what}: {value!r} != {expected!r}")
            return
        time.sleep(0.02)


def info_fields(r):
    info = r.info()
    for field in ("redis_version", "arch_bits", "process_id", "tcp_port", "uptime_in_seconds",
                  "connected_clients", "blocked_clients", "used_memory", "used_memory_human",
                  "maxmemory", "used_cpu_sys", "used_cpu_user", "cluster_enabled", "role",
                  "aof_enabled", "loading", "run_id"):
        check(field in info, f"INFO has {field}")
    check(info["arch_bits"] == 64, "arch_bits")
    check(info["cluster_enabled"] == 0, "cluster_enabled")
    check(info["role"] in ("master", "slave"), "role")
    check(info["used_memory"] > 0, "used_memory")
    everything = r.info("everything")
    check(everything.get("raft_role") in ("leader", "follower"),
          "INFO everything includes raftkv's raft section")
    check(r.info("cpu").keys() >= {"used_cpu_sys", "used_cpu_user"}, "INFO cpu")


def keyspace(r):
    r.flushall()
    r.set("a", 1)
    r.set("b", 2, px=60_000)
    r.set("c", 3)
    expected = {"keys": 3, "expires": 1, "avg_ttl": 0}
    eventually(lambda: r.info("keyspace").get("db0"), expected, "INFO keyspace db0")
    client(LEADER, db=2).set("x", "y")
    eventually(lambda: r.info("keyspace").get("db2"), {"keys": 1, "expires": 0, "avg_ttl": 0},
               "INFO keyspace db2")


def transactional_pipeline(r):
    r.delete("p")
    with r.pipeline() as pipe:  # transaction=True: MULTI ... EXEC
        result = pipe.set("p", 1).incr("p").incrby("p", 5).get("p").execute()
    check(result == [True, 2, 7, b"7"], f"pipeline result {result}")
    with r.pipeline() as pipe:
        pipe.set("p", "text").incr("p").get("p")
        try:
            pipe.execute()
            check(False, "a runtime error in a transaction raises")
        except ResponseError as error:
            check("not an integer" in str(error), f"runtime error text: {error}")
    check(r.get("p") == b"text", "the transaction's other commands ran")


def worker(port, index, done):
    r = client(port)
    attempts = 0

    def increment(pipe):
        nonlocal attempts
        attempts += 1
        value = int(pipe.get("counter") or 0)
        pipe.multi()
        pipe.set("counter", value + 1)

    for _ in range(INCREMENTS):
        # transaction() runs WATCH, the function and EXEC, and again after a WatchError.
        r.transaction(increment, "counter")
    done.put((index, attempts - INCREMENTS))


def watch_retry_loop():
    client(LEADER).set("counter", 0)
    done = multiprocessing.Queue()
    ports = [LEADER if index % 2 == 0 else FOLLOWER for index in range(WORKERS)]
    processes = [multiprocessing.Process(target=worker, args=(port, index, done))
                 for index, port in enumerate(ports)]
    for process in processes:
        process.start()
    results = [done.get(timeout=120) for _ in processes]
    for process in processes:
        process.join(timeout=30)
        check(process.exitcode == 0, "worker exited cleanly")
    total = int(client(LEADER).get("counter"))
    check(total == WORKERS * INCREMENTS, f"counter {total} != {WORKERS * INCREMENTS}")
    retries = sum(retries for _, retries in results)
    print(f"watch-retry: {WORKERS} processes x {INCREMENTS} increments = {total}, "
          f"{retries} retries")


def locks(r):
    r.delete("lk")
    first = r.lock("lk", timeout=1.0, blocking_timeout=2.0)
    check(first.acquire(), "redis-py Lock acquires (SET NX PX)")
    check(first.locked() and first.owned(), "locked() and owned() read the lock")
    second = client(FOLLOWER).lock("lk", timeout=1.0, blocking_timeout=0.3)
    check(not second.acquire(), "a held lock is not acquired within blocking_timeout")
    # Release and extend are Lua scripts (EVALSHA), which raftkv does not run.
    try:
        first.release()
        check(False, "Lock.release needs EVALSHA")
    except ResponseError as error:
        check("unknown command" in str(error), f"release error: {error}")
    waiting = client(FOLLOWER).lock("lk", timeout=1.0, blocking_timeout=5.0)
    started = time.monotonic()
    check(waiting.acquire(), "a blocking acquire succeeds once the lease expires")
    check(time.monotonic() - started < 5.0, "acquired within the lease time")
    r.delete("lk")

    # The README's recipe: the holder's fencing token is the lock's revision.
    tokens = []
    for port in (LEADER, FOLLOWER, LEADER):
        holder = client(port)
        token = uuid.uuid4().hex
        with holder.pipeline() as pipe:
            pipe.set("fenced", token, nx=True, px=5000)
            pipe.execute_command("REVISION", "fenced")
            acquired, fence = pipe.execute()
        check(acquired is True, "fenced lock acquired")
        tokens.append(fence)

        def release(pipe):
            if pipe.get("fenced") == token.encode():
                pipe.multi()
                pipe.delete("fenced")
        holder.transaction(release, "fenced")
        check(holder.get("fenced") is None, "released by compare-and-delete")
    check(tokens == sorted(tokens) and len(set(tokens)) == len(tokens),
          f"fencing tokens increase: {tokens}")


def databases():
    db1 = client(FOLLOWER, db=1)
    db1.set("in-db1", "yes")
    check(client(LEADER).get("in-db1") is None, "db=1 writes do not land in db 0")
    check(client(LEADER, db=1).get("in-db1") == b"yes", "db=1 writes land in db 1")
    r = client(LEADER)
    with r.pipeline() as pipe:
        result = pipe.execute_command("SELECT", 1).get("in-db1").execute()
    check(result == [True, b"yes"], f"SELECT inside a transaction: {result}")


def clients_and_config(r):
    r.client_setname("checker")
    check(r.client_getname() == "checker", "CLIENT GETNAME")
    me = r.client_id()
    listed = r.client_list()
    mine = [entry for entry in listed if entry["id"] == str(me)]
    check(len(mine) == 1 and mine[0]["name"] == "checker", f"CLIENT LIST shows me: {mine}")
    check(int(r.client_info()["id"]) == me, "CLIENT INFO")
    # CLIENT LIST and KILL see the connections of the node asked.
    victim = client(r.connection_pool.connection_kwargs["port"])
    victim.client_setname("victim")
    victim_id = victim.client_id()
    check(r.client_kill_filter(_id=victim_id) == 1, "CLIENT KILL ID")
    names = [entry["name"] for entry in r.client_list()]
    check("victim" not in names, f"killed client is gone: {names}")
    check(r.config_get("maxmemory") == {"maxmemory": "0"}, "CONFIG GET maxmemory")
    check(r.config_get("appendonly") == {"appendonly": "no"}, "CONFIG GET appendonly")
    check(r.config_set("save", "") is True, "CONFIG SET save to its value")
    r.set("n", 12345)
    r.set("s", "hello")
    check(r.object("encoding", "n") == b"int", "OBJECT ENCODING int")
    check(r.object("encoding", "s") == b"embstr", "OBJECT ENCODING embstr")
    check(r.object("refcount", "n") == 1, "OBJECT REFCOUNT of an unshared integer")
    try:
        r.object("freq", "n")
        check(False, "OBJECT FREQ is refused without an LFU policy")
    except ResponseError as error:
        check("LFU" in str(error), f"OBJECT FREQ error: {error}")


def main():
    leader, follower = client(LEADER), client(FOLLOWER)
    leader.flushall()
    info_fields(leader)
    info_fields(follower)
    check(leader.info("replication")["role"] == "master", "the leader is a master")
    check(follower.info("replication")["role"] == "slave", "a follower is a slave")
    keyspace(follower)
    transactional_pipeline(follower)
    watch_retry_loop()
    locks(leader)
    databases()
    clients_and_config(follower)
    print(f"redis-py {redis.__version__}: {checks} checks passed")


if __name__ == "__main__":
    multiprocessing.set_start_method("fork")
    main()
