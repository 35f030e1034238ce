import Foundation
import Glibc
import SysKit
import TestSupport
import XCTest

/// A machine that holds everything it needs starts at once: with the environment warmed and the
/// store unreachable, the mount comes up offline from the cached ref within 3 s, whether the
/// store refuses the connection or accepts it and never answers; `status` then says when the
/// store is back and whether it holds a newer revision.
final class OfflineStartTests: MountTestCase {

    func startNginx(_ dir: String, port: Int, state: String) throws -> Int32 {
        let (rc, out) = Servers.run("/bin/bash", [Servers.repoRoot + "/Tools/servers/nginx.sh", "start", dir, "\(port)", state])
        guard rc == 0, let pid = Servers.keyValues(out)["NGINX_PID"].flatMap({ Int32($0) }) else {
            throw Servers.unavailable("nginx did not start: \(out)")
        }
        stops.append { Servers.run("/bin/bash", [Servers.repoRoot + "/Tools/servers/nginx.sh", "stop", state]) }
        return pid
    }

    func stopNginx(_ state: String) {
        Servers.run("/bin/bash", [Servers.repoRoot + "/Tools/servers/nginx.sh", "stop", state])
    }

    /// Mounts, times it, checks every file, unmounts.
    func timedOfflineMount(_ url: String, _ mnt: String, cache: String, src: String, _ extra: [String] = []) throws -> Double {
        let start = Date()
        let r = try h.run("envmount", ["mount", url, mnt, "--env", "offline", "--cache-dir", cache] + extra)
        let seconds = Date().timeIntervalSince(start)
        XCTAssertEqual(r.status, 0, r.stderr)
        guard r.status == 0 else { return seconds }
        try h.adopt(mnt, r)
        XCTAssertTrue(r.stderr.contains("mounting cached revision 1 of offline offline"), r.stderr)
        XCTAssertTrue(r.stdout.contains("offline from cache"), r.stdout)
        XCTAssertGreaterThan(try TreeFixture.assertSame(source: src, mount: mnt, skipContent: []), 3)
        return seconds
    }

    func testWarmedMountStartsOfflineQuicklyAndStatusSeesTheStoreReturn() throws {
        let src = h.dir + "/src/offline", store = h.dir + "/store", mnt = h.dir + "/mnt", cache = h.dir + "/cache"
        try FS.makeDirectories(src + "/pkg")
        var rng = SeededRandom(seed: 31)
        for i in 0..<3 { try writeFile((src + "/pkg/m\(i).bin").pathBytes, rng.bytes(2 << 20)) }
        try writeFile((src + "/pkg/__init__.py").pathBytes, Array("X = 1\n".utf8))
        XCTAssertEqual(try h.publish(src, store).status, 0)
        let port = try Servers.freePort()
        let state = h.dir + "/nginx"
        _ = try startNginx(store, port: port, state: state)
        let url = "http://127.0.0.1:\(port)/"
        try h.mount(url, mnt, cache: cache, ["--env", "offline"])
        let w = try h.run("envmount", ["warm", mnt, "--all"])
        XCTAssertTrue(w.stdout.contains("complete"), w.stdout + w.stderr)
        XCTAssertEqual(try h.unmount(mnt).status, 0)

        // Connection refused: an answer, not something to retry for a minute.
        stopNginx(state)
        let refused = try timedOfflineMount(url, mnt, cache: cache, src: src)
        XCTAssertLessThan(refused, 3, "offline mount with the store refusing connections took \(refused) s")
        let down = try status(mnt)["storeCheck"] as? [String: Any]
        XCTAssertEqual(down?["reachable"] as? Bool, false, "\(String(describing: down))")

        // The store comes back with a newer revision: status says so, no remount needed to learn it.
        _ = try startNginx(store, port: port, state: state)
        var back = try status(mnt)["storeCheck"] as? [String: Any]
        XCTAssertEqual(back?["reachable"] as? Bool, true)
        XCTAssertEqual(back?["newer"] as? Bool, false)
        let next = h.dir + "/src2/offline"
        try FS.makeDirectories(next)
        try writeFile((next + "/new.py").pathBytes, Array("Y = 2\n".utf8))
        XCTAssertEqual(try h.publish(next, store).status, 0)
        back = try status(mnt)["storeCheck"] as? [String: Any]
        XCTAssertEqual(back?["newer"] as? Bool, true)
        XCTAssertEqual(back?["revision"] as? Int, 2)
        let text = try h.run("envmount", ["status", mnt])
        XCTAssertTrue(text.stdout.contains("newer revision 2"), text.stdout)
        XCTAssertEqual(try h.unmount(mnt).status, 0)
        stopNginx(state)

        // A store that accepts connections and never answers gets --ref-timeout, then offline.
        let silent = h.dir + "/silent.pid"
        _ = system("python3 -c 'import socket,time; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
                   + "s.bind((\"127.0.0.1\",\(port))); s.listen(64); time.sleep(120)' </dev/null >/dev/null 2>&1 & echo $! >\(silent)")
        let pid = Int32((try? String(contentsOfFile: silent, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "") ?? 0
        XCTAssertGreaterThan(pid, 0)
        stops.append { if pid > 0 { kill(pid, SIGTERM) } }
        var listening = false
        for _ in 0..<100 where !listening {
            listening = system("python3 -c 'import socket; socket.create_connection((\"127.0.0.1\",\(port)), 1)' 2>/dev/null") == 0
            if !listening { usleep(50_000) }
        }
        XCTAssertTrue(listening, "the silent server did not listen")
        // The cached ref is still revision 1 (the status check does not replace it).
        let silentTime = try timedOfflineMount(url, mnt, cache: cache, src: src, ["--ref-timeout", "1"])
        XCTAssertGreaterThan(silentTime, 0.9, "the silent store got its --ref-timeout")
        XCTAssertLessThan(silentTime, 3, "offline mount with a silent store took \(silentTime) s")
        print("offline mount: \(String(format: "%.2f", refused)) s with the connection refused, "
              + "\(String(format: "%.2f", silentTime)) s with a silent store and --ref-timeout 1")
    }
}
