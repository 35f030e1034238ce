import CurlKit
import EnvStore
import Foundation
import SysKit
import TestSupport
import XCTest

/// HTTPS for real: nginx with a certificate from a throwaway CA (Tools/servers/tls.sh) on
/// 127.0.0.1, serving a directory store (the HTTP store) and as a TLS proxy in front of moto (the
/// S3 store, signatures checked through the proxy). Plus the CA bundle precedence.
final class TLSStoreTests: XCTestCase {
    var tls: TLSMaterial!
    var stops: [() -> Void] = []
    var dir = ""

    override func setUpWithError() throws {
        tls = try TLSMaterial()
        dir = Servers.makeTempDir("tls-store")
    }

    override func tearDown() {
        for s in stops.reversed() { s() }
        tls?.remove()
        try? FileManager.default.removeItem(atPath: dir)
    }

    /// No CA variables from the machine running the tests.
    let clean: [String: String] = ["HOME": "/nonexistent"]

    func options(_ bundle: String? = nil, deadline: Double = 5) -> StoreOptions {
        var o = StoreOptions()
        o.caBundle = bundle
        o.requestDeadline = deadline
        return o
    }

    func testPrecedenceOfCABundleSources() throws {
        let a = dir + "/a.pem", b = dir + "/b.pem", c = dir + "/c.pem", d = dir + "/d.pem", e = dir + "/e.pem"
        for f in [a, b, c, d, e] { try FileManager.default.copyItem(atPath: tls.ca, toPath: f) }
        try "[profile dev]\nca_bundle = \(c)\n".write(toFile: dir + "/config", atomically: true, encoding: .utf8)
        let all = ["AWS_CA_BUNDLE": b, "AWS_CONFIG_FILE": dir + "/config", "AWS_PROFILE": "dev",
                   "CURL_CA_BUNDLE": d, "SSL_CERT_FILE": e, "HOME": "/nonexistent"]
        func pick(_ option: String?, _ env: [String: String], s3: Bool) throws -> CABundle? {
            let profile = AWSConfig.resolve(options: StoreOptions(), environment: env).profileCABundle
            return try CABundle.resolve(option: option, s3Profile: profile, s3: s3, environment: env, store: "s")
        }
        XCTAssertEqual(try pick(a, all, s3: true), CABundle(path: a, source: "--ca-bundle"))
        XCTAssertEqual(try pick(nil, all, s3: true), CABundle(path: b, source: "AWS_CA_BUNDLE"))
        var env = all
        env["AWS_CA_BUNDLE"] = nil
        XCTAssertEqual(try pick(nil, env, s3: true), CABundle(path: c, source: "ca_bundle in \(dir)/config [dev]"))
        env["AWS_PROFILE"] = nil
        XCTAssertEqual(try pick(nil, env, s3: true), CABundle(path: d, source: "CURL_CA_BUNDLE"))
        env["CURL_CA_BUNDLE"] = nil
        XCTAssertEqual(try pick(nil, env, s3: true), CABundle(path: e, source: "SSL_CERT_FILE"))
        env["SSL_CERT_FILE"] = nil
        XCTAssertNil(try pick(nil, env, s3: true))
        // The AWS settings are for S3 only: an http(s) store goes on to CURL_CA_BUNDLE.
        XCTAssertEqual(try pick(nil, all, s3: false), CABundle(path: d, source: "CURL_CA_BUNDLE"))
        XCTAssertEqual(try pick(a, all, s3: false), CABundle(path: a, source: "--ca-bundle"))
        // Without TLS the environment's settings do not matter, even a missing file.
        var stale = all
        stale["SSL_CERT_FILE"] = dir + "/gone.pem"
        stale["CURL_CA_BUNDLE"] = nil
        XCTAssertNil(try CABundle.resolve(option: nil, s3Profile: nil, s3: false, tls: false, environment: stale, store: "s"))
        XCTAssertNoThrow(try HTTPStore(urls: ["http://127.0.0.1:1/"], options: StoreOptions(), environment: stale))
        XCTAssertThrowsError(try HTTPStore(urls: ["https://127.0.0.1:1/"], options: StoreOptions(), environment: stale))
    }

    func testAMissingOrEmptyBundleIsAnErrorNamingIt() throws {
        let missing = dir + "/no-such-ca.pem"
        XCTAssertThrowsError(try HTTPStore(urls: ["https://127.0.0.1:1/"], options: options(missing), environment: clean)) { e in
            let text = "\(e)"
            XCTAssertTrue(text.contains(missing) && text.contains("--ca-bundle") && text.contains("cannot be read"), text)
            XCTAssertFalse(text.contains("\n"), text)
        }
        try "not a certificate\n".write(toFile: dir + "/junk.pem", atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try S3Store(url: "s3://b", options: StoreOptions(),
                                         environment: clean.merging(["AWS_CA_BUNDLE": dir + "/junk.pem", "AWS_ENDPOINT_URL": "https://127.0.0.1:1"]) { $1 })) { e in
            let text = "\(e)"
            XCTAssertTrue(text.contains(dir + "/junk.pem") && text.contains("AWS_CA_BUNDLE") && text.contains("no PEM certificate"), text)
        }
    }

    func testHTTPStoreOverTLS() throws {
        let www = dir + "/www"
        try DirectoryStore(root: www).put("refs/main", Array("the ref".utf8))
        let nginx = try TLSNginxServer(serving: www, tls: tls)
        stops.append { nginx.stop() }
        let url = nginx.url + "/"

        // The system store does not know the throwaway CA: refused at once (not retried to the
        // deadline), in one line that names the CA bundle options.
        let start = Date()
        XCTAssertThrowsError(try HTTPStore(urls: [url], options: options(deadline: 20), environment: clean).get("refs/main")) { e in
            let text = "\(e)"
            XCTAssertTrue(text.contains("tls error") && text.contains("system CA store") && text.contains("--ca-bundle FILE"), text)
            XCTAssertFalse(text.contains("\n"), text)
        }
        XCTAssertLessThan(Date().timeIntervalSince(start), 5)
        // A wrong CA is refused too, and the message says which bundle was used.
        XCTAssertThrowsError(try HTTPStore(urls: [url], options: options(tls.otherCA), environment: clean).get("refs/main")) { e in
            XCTAssertTrue("\(e)".contains("\(tls.otherCA) (from --ca-bundle)"), "\(e)")
        }
        // The right CA, from each source an http(s) store honours.
        XCTAssertEqual(try HTTPStore(urls: [url], options: options(tls.ca), environment: clean).get("refs/main"), Array("the ref".utf8))
        for variable in ["CURL_CA_BUNDLE", "SSL_CERT_FILE"] {
            let s = try HTTPStore(urls: [url], options: options(), environment: clean.merging([variable: tls.ca]) { $1 })
            XCTAssertEqual(try s.get("refs/main"), Array("the ref".utf8), variable)
        }
        // --ca-bundle wins over a wrong CURL_CA_BUNDLE.
        let s = try HTTPStore(urls: [url], options: options(tls.ca), environment: clean.merging(["CURL_CA_BUNDLE": tls.otherCA]) { $1 })
        XCTAssertTrue(try s.exists("refs/main"))
    }

    func testS3StoreOverTLSThroughAProxyInFrontOfMoto() throws {
        let moto = try MotoServer()
        stops.append { moto.stop() }
        let proxy = try TLSNginxServer(proxyTo: moto.endpoint, tls: tls)
        stops.append { proxy.stop() }
        var env = moto.env
        env["AWS_ENDPOINT_URL"] = proxy.url

        XCTAssertThrowsError(try S3Store(url: "s3://tls-bucket", options: options(), environment: env).createBucket()) { e in
            XCTAssertTrue("\(e)".contains("tls error") && "\(e)".contains("AWS_CA_BUNDLE"), "\(e)")
        }
        env["AWS_CA_BUNDLE"] = tls.ca
        let s = try S3Store(url: "s3://tls-bucket/p", options: options(deadline: 20), environment: env)
        try s.createBucket()
        try StoreContract.run(s, manyKeys: 20)
        // Signatures are still checked behind the proxy (the Host header reaches moto unchanged).
        var wrong = env
        wrong["AWS_SECRET_ACCESS_KEY"] = "wrong"
        XCTAssertThrowsError(try S3Store(url: "s3://tls-bucket/p", options: options(), environment: wrong).get("refs/main")) { e in
            XCTAssertTrue("\(e)".contains("SignatureDoesNotMatch"), "\(e)")
        }
        // The profile's ca_bundle works the same way.
        try "[default]\nca_bundle = \(tls.ca)\n".write(toFile: dir + "/config", atomically: true, encoding: .utf8)
        env["AWS_CA_BUNDLE"] = nil
        env["AWS_CONFIG_FILE"] = dir + "/config"
        let viaProfile = try S3Store(url: "s3://tls-bucket/p", options: options(), environment: env)
        XCTAssertEqual(viaProfile.caBundle?.source, "ca_bundle in \(dir)/config [default]")
        XCTAssertFalse(try viaProfile.list(prefix: "chunks/").isEmpty)
    }
}
