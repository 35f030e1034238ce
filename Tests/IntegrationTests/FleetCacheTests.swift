import Foundation
import Glibc
import SysKit
import TestSupport
import XCTest

/// A fleet costs the origin one copy: a real Squid (Tools/servers/squid.sh, Debian's package)
/// in front of nginx, 8 mounts with their own caches starting at once through it (http_proxy),
/// each running a venv's imports. The origin's bytes (nginx's log) must stay within 1.2× of what
/// one mount alone takes from it.
final class FleetCacheTests: MountTestCase {

    static let packages = (0..<6).map { "fleet_pkg_\($0)" }

    /// A real venv with six generated packages of 30 modules (~16 KB each) and a 1.5 MiB data file
    /// each, read at import the way an extension module is, plus 8 MiB nothing imports.
    func makeVenv(_ path: String) throws {
        try TreeFixture.makeVenv(path)
        let lib = try FS.listDirectory(path + "/lib").first { $0.hasPrefix("python3") }!
        let site = "\(path)/lib/\(lib)/site-packages"
        var rng = SeededRandom(seed: 99)
        for (p, name) in Self.packages.enumerated() {
            try FS.makeDirectories(site + "/" + name)
            var initPy = "import os\n"
            for m in 0..<30 {
                let blob = Hex.encode(rng.bytes(7_000))
                let source = "\"\"\"module \(m) of \(name)\"\"\"\nDATA = '\(blob)'\n\ndef value():\n    return len(DATA) + \(p * 100 + m)\n"
                try writeFile((site + "/\(name)/mod\(m).py").pathBytes, Array(source.utf8))
                initPy += "from . import mod\(m)\n"
            }
            try writeFile((site + "/\(name)/_native.bin").pathBytes, rng.bytes(1_536 << 10))
            initPy += "with open(os.path.join(os.path.dirname(__file__), '_native.bin'), 'rb') as f:\n    SIZE = len(f.read())\n"
            try writeFile((site + "/\(name)/__init__.py").pathBytes, Array(initPy.utf8))
        }
        try FS.makeDirectories(site + "/zz_unused")
        try writeFile((site + "/zz_unused/blob.bin").pathBytes, rng.bytes(8 << 20))
    }

    /// Bytes nginx sent, from its access log (status and size follow the quoted request line).
    static func originBytes(_ log: String) -> (bytes: Int, requests: Int) {
        let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        var bytes = 0, requests = 0
        for line in text.split(separator: "\n") {
            guard let end = line.range(of: "HTTP/1.1\" ") ?? line.range(of: "HTTP/1.0\" ") else { continue }
            let fields = line[end.upperBound...].split(separator: " ")
            if fields.count >= 2, let b = Int(fields[1]) { bytes += b; requests += 1 }
        }
        return (bytes, requests)
    }

    func testEightMountsThroughSquidCostTheOriginOneCopy() throws {
        let src = h.dir + "/src/fleetvenv", store = h.dir + "/store"
        try makeVenv(src)
        XCTAssertEqual(try h.publish(src, store).status, 0)
        let nginx = try NginxServer(serving: store)
        stops.append { nginx.stop() }
        let url = nginx.url + "/"
        let workload = ["-c", "import " + Self.packages.joined(separator: ", ") + "; print(sum(p.SIZE for p in ["
                        + Self.packages.joined(separator: ", ") + "]))"]
        let expected = "\(6 * (1_536 << 10))\n"
        // Loopback origins are often listed in no_proxy; the fleet must go through the proxy.
        let noBypass = ["no_proxy": "", "NO_PROXY": ""]

        // One mount alone, straight to the origin.
        let solo = h.dir + "/solo"
        try h.mount(url, solo, cache: h.dir + "/cache-solo", ["--env", "fleetvenv"], env: noBypass)
        let r = try h.run(solo + "/bin/python", workload)
        XCTAssertEqual(r.stdout, expected, r.stderr)
        XCTAssertEqual(try h.unmount(solo).status, 0)
        let one = Self.originBytes(nginx.accessLog)
        XCTAssertGreaterThan(one.bytes, 6 << 20)
        try Data().write(to: URL(fileURLWithPath: nginx.accessLog))

        // Eight at once through squid, each with its own cache.
        let squidState = h.dir + "/squid"
        let port = try Servers.freePort()
        let (rc, out) = Servers.run("/bin/bash", [Servers.repoRoot + "/Tools/servers/squid.sh", "start", "\(port)", squidState])
        guard rc == 0, let proxy = Servers.keyValues(out)["http_proxy"] else {
            throw Servers.unavailable("squid did not start (Tools/servers/squid.sh): \(out)")
        }
        stops.append { Servers.run("/bin/bash", [Servers.repoRoot + "/Tools/servers/squid.sh", "stop", squidState]) }
        let env = noBypass.merging(["http_proxy": proxy]) { $1 }
        let n = 8
        let mps = (0..<n).map { h.dir + "/node\($0)" }
        for mp in mps { try FS.makeDirectories(mp) }
        let results = Locked<[Int: (CommandResult, CommandResult?)]>([:])
        let shared = SharedHarness(h: self.h!)
        let start = Date()
        DispatchQueue.concurrentPerform(iterations: n) { i in
            let m = (try? shared.h.run("envmount", ["mount", url, mps[i], "--env", "fleetvenv", "--cache-dir", shared.h.dir + "/cache\(i)"], env: env))
                ?? CommandResult(status: -1, stdout: "", stderr: "could not run envmount")
            var w: CommandResult?
            if m.status == 0 { w = try? shared.h.run(mps[i] + "/bin/python", workload) }
            results.with { $0[i] = (m, w) }
        }
        let seconds = Date().timeIntervalSince(start)
        for i in 0..<n {
            guard let (m, w) = results.value[i] else { XCTFail("node \(i) did not run"); continue }
            XCTAssertEqual(m.status, 0, "node \(i) mount: \(m.stderr)")
            if m.status == 0 { try h.adopt(mps[i], m) }
            XCTAssertEqual(w?.stdout, expected, "node \(i) imports: \(w?.stderr ?? "")")
        }
        let fleet = Self.originBytes(nginx.accessLog)
        let squidLog = (try? String(contentsOfFile: squidState + "/access.log", encoding: .utf8)) ?? ""
        let served = squidLog.split(separator: "\n").count
        let hits = squidLog.split(separator: "\n").filter { $0.contains("HIT") }.count
        let ratio = Double(fleet.bytes) / Double(one.bytes)
        print("fleet: one mount took \(one.bytes) B in \(one.requests) requests from the origin; \(n) mounts through squid took "
              + "\(fleet.bytes) B in \(fleet.requests) requests (\(String(format: "%.2f", ratio))× one mount; squid answered "
              + "\(served) requests, \(hits) hits) in \(String(format: "%.1f", seconds)) s")
        XCTAssertLessThanOrEqual(ratio, 1.2, "origin bytes for \(n) mounts through squid: \(fleet.bytes) vs \(one.bytes) for one")
        XCTAssertGreaterThan(served, fleet.requests, "the mounts went through squid")
    }
}

/// Harness.run touches no shared state, so several threads may call it at once.
struct SharedHarness: @unchecked Sendable {
    let h: Harness
}

/// A value guarded by a lock, for results gathered from concurrent work.
final class Locked<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var v: T
    init(_ v: T) { self.v = v }
    func with(_ f: (inout T) -> Void) { lock.lock(); f(&v); lock.unlock() }
    var value: T { lock.lock(); defer { lock.unlock() }; return v }
}
