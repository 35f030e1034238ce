import Foundation
import XCTest

/// A throwaway CA and a certificate for 127.0.0.1 from Tools/servers/tls.sh.
public struct TLSMaterial {
    public let dir: String
    /// The CA that signed the server certificate.
    public let ca: String
    public let cert: String
    public let key: String
    /// A CA that signed nothing here: a wrong bundle.
    public let otherCA: String

    public init() throws {
        dir = Servers.makeTempDir("tls")
        let (rc, out) = Servers.run("/bin/bash", [Servers.repoRoot + "/Tools/servers/tls.sh", "make", dir])
        let kv = Servers.keyValues(out)
        guard rc == 0, let ca = kv["TLS_CA"], let cert = kv["TLS_CERT"], let key = kv["TLS_KEY"], let other = kv["TLS_OTHER_CA"] else {
            throw Servers.unavailable("Tools/servers/tls.sh could not make a CA: \(out)")
        }
        self.ca = ca
        self.cert = cert
        self.key = key
        otherCA = other
    }

    public func remove() { try? FileManager.default.removeItem(atPath: dir) }
}

/// nginx on 127.0.0.1 with TLS (Tools/servers/nginx.sh with NGINX_TLS_CERT/KEY): serving a
/// directory, or as a reverse proxy in front of an upstream (moto), keeping the Host header.
public final class TLSNginxServer {
    public let port: Int
    public let pid: Int32
    public let state: String

    public init(serving dir: String, tls: TLSMaterial) throws {
        (port, pid, state) = try Self.start(["start", dir], tls: tls)
    }

    public init(proxyTo upstream: String, tls: TLSMaterial) throws {
        (port, pid, state) = try Self.start(["proxy", upstream], tls: tls)
    }

    private static func start(_ args: [String], tls: TLSMaterial) throws -> (Int, Int32, String) {
        let port = try Servers.freePort()
        let state = Servers.makeTempDir("nginx-tls")
        let (rc, out) = Servers.run("/usr/bin/env", ["NGINX_TLS_CERT=\(tls.cert)", "NGINX_TLS_KEY=\(tls.key)", "/bin/bash",
                                                     Servers.repoRoot + "/Tools/servers/nginx.sh"] + args + ["\(port)", state])
        guard rc == 0, let pid = Servers.keyValues(out)["NGINX_PID"].flatMap({ Int32($0) }) else {
            throw Servers.unavailable("nginx with TLS did not start (Tools/servers/nginx.sh): \(out)")
        }
        return (port, pid, state)
    }

    public var url: String { "https://127.0.0.1:\(port)" }

    public var accessLog: String { state + "/access.log" }

    public func stop() {
        Servers.kill(pid)
        Servers.run("/bin/bash", [Servers.repoRoot + "/Tools/servers/nginx.sh", "stop", state])
        try? FileManager.default.removeItem(atPath: state)
    }
}
