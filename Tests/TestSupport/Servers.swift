import Foundation
import XCTest

/// Starts the project's test servers (Tools/servers/*.sh, Tools/faultproxy.py) on free loopback
/// ports and stops them by PID. A server that cannot start fails the test when CI is set and
/// skips it otherwise.
public enum Servers {
    public static let repoRoot: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }  // Tests/TestSupport/Servers.swift -> repo root
        return url.path
    }()

    public static var isCI: Bool { !(ProcessInfo.processInfo.environment["CI"] ?? "").isEmpty }

    /// Fails (CI) or skips (elsewhere) with `message`.
    public static func unavailable(_ message: String, file: StaticString = #filePath, line: UInt = #line) -> Error {
        if isCI {
            XCTFail("test server unavailable (CI is set, so this is a failure): \(message)", file: file, line: line)
            return XCTSkip("failed: \(message)")
        }
        return XCTSkip("test server unavailable: \(message) (set CI=1 to make this a failure)")
    }

    public static func freePort() throws -> Int {
        let (rc, out) = run("/usr/bin/env", ["python3", "-c",
            "import socket; s=socket.socket(); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])"])
        guard rc == 0, let p = Int(out.trimmingCharacters(in: .whitespacesAndNewlines)) else {
            throw unavailable("python3 could not pick a free port: \(out)")
        }
        return p
    }

    /// Runs a command to completion through /bin/sh (system(3), which reaps the child itself;
    /// Foundation's Process.waitUntilExit hung here once a script had left a daemon behind).
    /// Returns the exit status and the command's stdout+stderr.
    @discardableResult
    public static func run(_ exe: String, _ args: [String]) -> (Int32, String) {
        let out = NSTemporaryDirectory() + "envstore-run-\(UUID().uuidString.prefix(8)).out"
        defer { try? FileManager.default.removeItem(atPath: out) }
        let cmd = ([exe] + args).map(shellQuote).joined(separator: " ") + " </dev/null >" + shellQuote(out) + " 2>&1"
        let rc = system(cmd)
        let text = (try? String(contentsOfFile: out, encoding: .utf8)) ?? ""
        return (rc == -1 ? -1 : (rc >> 8) & 0xff, text)
    }

    public static func shellQuote(_ s: String) -> String { "'" + s.replacingOccurrences(of: "'", with: "'\\''") + "'" }

    public static func keyValues(_ text: String) -> [String: String] {
        var out: [String: String] = [:]
        for line in text.split(separator: "\n") {
            guard let eq = line.firstIndex(of: "=") else { continue }
            out[String(line[..<eq])] = String(line[line.index(after: eq)...])
        }
        return out
    }

    public static func kill(_ pid: Int32) {
        _ = Glibc.kill(pid, SIGTERM)
    }

    public static func makeTempDir(_ tag: String) -> String {
        let dir = NSTemporaryDirectory() + "envstore-\(tag)-\(UUID().uuidString.prefix(8))"
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true,
                                                 attributes: [.posixPermissions: 0o755])
        return dir
    }
}

/// nginx serving a directory.
public final class NginxServer {
    public let port: Int
    public let pid: Int32
    public let accessLog: String
    public let state: String

    public init(serving dir: String) throws {
        port = try Servers.freePort()
        state = Servers.makeTempDir("nginx")
        let (rc, out) = Servers.run("/bin/bash", [Servers.repoRoot + "/Tools/servers/nginx.sh", "start", dir, "\(port)", state])
        let kv = Servers.keyValues(out)
        guard rc == 0, let p = kv["NGINX_PID"].flatMap({ Int32($0) }), let log = kv["NGINX_ACCESS_LOG"] else {
            throw Servers.unavailable("nginx did not start (Tools/servers/nginx.sh): \(out)")
        }
        pid = p
        accessLog = log
    }

    public var url: String { "http://127.0.0.1:\(port)" }

    /// Requests nginx has logged so far.
    public var requestCount: Int {
        ((try? String(contentsOfFile: accessLog, encoding: .utf8)) ?? "").split(separator: "\n").count
    }

    public func stop() {
        Servers.kill(pid)
        Servers.run("/bin/bash", [Servers.repoRoot + "/Tools/servers/nginx.sh", "stop", state])
        try? FileManager.default.removeItem(atPath: state)
    }
}

/// moto_server with signature checking; `env` holds the test user's credentials and endpoint.
public final class MotoServer {
    public let port: Int
    public let pid: Int32
    public let env: [String: String]
    public let state: String

    public init() throws {
        port = try Servers.freePort()
        state = Servers.makeTempDir("moto")
        let (rc, out) = Servers.run("/bin/bash", [Servers.repoRoot + "/Tools/servers/moto.sh", "start", "\(port)", state])
        let kv = Servers.keyValues(out)
        guard rc == 0, let p = kv["MOTO_PID"].flatMap({ Int32($0) }), kv["AWS_ACCESS_KEY_ID"] != nil else {
            throw Servers.unavailable("moto did not start (Tools/servers/moto.sh): \(out)")
        }
        pid = p
        // HOME points nowhere so no real ~/.aws file is ever read.
        env = ["AWS_ACCESS_KEY_ID": kv["AWS_ACCESS_KEY_ID"]!, "AWS_SECRET_ACCESS_KEY": kv["AWS_SECRET_ACCESS_KEY"]!,
               "AWS_ENDPOINT_URL": kv["AWS_ENDPOINT_URL"]!, "HOME": "/nonexistent"]
    }

    public var endpoint: String { "http://127.0.0.1:\(port)" }

    public func stop() {
        Servers.kill(pid)
        Servers.run("/bin/bash", [Servers.repoRoot + "/Tools/servers/moto.sh", "stop", state])
        try? FileManager.default.removeItem(atPath: state)
    }
}

/// Tools/faultproxy.py in front of an upstream.
public final class FaultProxy {
    public let port: Int
    public let pid: Int32

    public let dir: String

    public init(upstream: String) throws {
        dir = Servers.makeTempDir("faultproxy")
        let out = dir + "/out"
        let cmd = ["python3", Servers.repoRoot + "/Tools/faultproxy.py", "--upstream", upstream, "--port", "0"]
            .map(Servers.shellQuote).joined(separator: " ")
        _ = system(cmd + " </dev/null >" + Servers.shellQuote(out) + " 2>&1 &")
        var kv: [String: String] = [:]
        for _ in 0..<100 {
            kv = Servers.keyValues((try? String(contentsOfFile: out, encoding: .utf8)) ?? "")
            if kv["FAULTPROXY_PID"] != nil { break }
            usleep(50_000)
        }
        guard let port = kv["FAULTPROXY_PORT"].flatMap({ Int($0) }), let pid = kv["FAULTPROXY_PID"].flatMap({ Int32($0) }) else {
            throw Servers.unavailable("faultproxy did not start: \((try? String(contentsOfFile: out, encoding: .utf8)) ?? "")")
        }
        self.port = port
        self.pid = pid
    }

    public var url: String { "http://127.0.0.1:\(port)" }

    /// Replaces the fault settings (see Tools/faultproxy.py).
    public func set(_ faults: [String: String]) throws {
        let q = faults.map { "\($0.key)=\($0.value)" }.joined(separator: "&")
        let (rc, out) = Servers.run("/usr/bin/curl", ["-sf", "\(url)/__faultproxy/set?\(q)"])
        XCTAssertEqual(rc, 0, "faultproxy control: \(out)")
    }

    /// Proxied requests counted so far.
    public func requests() throws -> Int {
        let (_, out) = Servers.run("/usr/bin/curl", ["-sf", "\(url)/__faultproxy/stats"])
        let obj = try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any]
        return obj?["requests"] as? Int ?? -1
    }

    public func stop() {
        Servers.kill(pid)
        try? FileManager.default.removeItem(atPath: dir)
    }
}
