# python's zeroconf (Debian's python3-zeroconf) as a real mDNS/DNS-SD client for the tests
# (tests/src/mdns.rs runs it with /usr/bin/python3 inside a LAN client namespace).
#
#   zc.py browse  ADDR TYPE TIMEOUT_MS            -> JSON list of instance names seen
#   zc.py resolve ADDR TYPE INSTANCE TIMEOUT_MS   -> JSON object, or null if not resolved
#
# ADDR is the namespace's eth0 IPv4 address: zeroconf binds its sockets to that interface
# only (interfaces=[ADDR]), so it never speaks on another link.
import json
import sys
import time

from zeroconf import ServiceBrowser, ServiceStateChange, Zeroconf


def full_type(t):
    t = t.rstrip(".")
    return t + ".local." if not t.endswith(".local") else t + "."


def browse(zc, stype, timeout_ms):
    seen = []

    def on_change(zeroconf, service_type, name, state_change):
        if state_change is ServiceStateChange.Added and name not in seen:
            seen.append(name)

    browser = ServiceBrowser(zc, stype, handlers=[on_change])
    time.sleep(timeout_ms / 1000.0)
    browser.cancel()
    return seen


def resolve(zc, stype, instance, timeout_ms):
    info = zc.get_service_info(stype, instance + "." + stype, timeout=timeout_ms)
    if info is None:
        return None
    txt = {}
    for k, v in (info.properties or {}).items():
        key = k.decode("utf-8", "replace")
        txt[key] = None if v is None else v.decode("utf-8", "replace")
    return {
        "addresses": info.parsed_addresses(),
        "port": info.port,
        "txt": txt,
        "server": info.server,
    }


def main():
    cmd, addr, stype = sys.argv[1], sys.argv[2], full_type(sys.argv[3])
    zc = Zeroconf(interfaces=[addr])
    try:
        if cmd == "browse":
            out = browse(zc, stype, int(sys.argv[4]))
        elif cmd == "resolve":
            out = resolve(zc, stype, sys.argv[4], int(sys.argv[5]))
        else:
            raise SystemExit("unknown command " + cmd)
    finally:
        zc.close()
    print(json.dumps(out))


main()
