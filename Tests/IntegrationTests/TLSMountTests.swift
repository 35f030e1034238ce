import EnvStore
import Foundation
import Glibc
import SysKit
import TestSupport
import XCTest

/// Real FUSE mounts over HTTPS with a private CA: nginx serving a store, and nginx as a TLS proxy
/// in front of moto (S3, signatures checked). Without the CA, or with the wrong one, the mount and
/// the publish are refused in one line that names the CA bundle options; with it they work.
final class TLSMountTests: MountTestCase {
    var tls: TLSMaterial!

    override func setUpWithError() throws {
        try super.setUpWithError()
        tls = try TLSMaterial()
    }

    override func tearDown() {
        super.tearDown()
        tls?.remove()
    }

    func makeSource() throws -> String {
        let src = h.dir + "/src/tlsenv"
        try FS.makeDirectories(src + "/pkg")
        var rng = SeededRandom(seed: 77)
        try writeFile((src + "/pkg/big.bin").pathBytes, rng.bytes(3 << 20))
        try writeFile((src + "/pkg/mod.py").pathBytes, Array("VALUE = 42\n".utf8))
        return src
    }

    /// The CA variables blanked (a machine may set them all to the system bundle).
    let noCAVariables = ["AWS_CA_BUNDLE": "", "CURL_CA_BUNDLE": "", "SSL_CERT_FILE": ""]

    /// One line on stderr, no trailing lines, naming the options a user can reach for.
    func assertRefusedInOneLine(_ r: CommandResult, mentions: [String], file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertNotEqual(r.status, 0, file: file, line: line)
        let text = r.stderr.trimmingCharacters(in: .whitespacesAndNewlines)
        XCTAssertEqual(text.split(separator: "\n").count, 1, "one line: \(text)", file: file, line: line)
        for m in mentions { XCTAssertTrue(text.contains(m), "'\(m)' in: \(text)", file: file, line: line) }
    }

    func testHTTPSMountNeedsTheCAAndWorksWithIt() throws {
        let src = try makeSource(), store = h.dir + "/store"
        XCTAssertEqual(try h.publish(src, store).status, 0)
        let nginx = try TLSNginxServer(serving: store, tls: tls)
        stops.append { nginx.stop() }
        let mnt = h.dir + "/mnt", cache = h.dir + "/cache"
        try FS.makeDirectories(mnt)
        let url = nginx.url + "/"

        let none = try h.run("envmount", ["mount", url, mnt, "--env", "tlsenv", "--cache-dir", cache], env: noCAVariables)
        assertRefusedInOneLine(none, mentions: ["tls", "system CA store", "--ca-bundle FILE", "SSL_CERT_FILE"])
        let wrong = try h.run("envmount", ["mount", url, mnt, "--env", "tlsenv", "--cache-dir", cache],
                              env: noCAVariables.merging(["CURL_CA_BUNDLE": tls.otherCA]) { $1 })
        assertRefusedInOneLine(wrong, mentions: ["\(tls.otherCA) (from CURL_CA_BUNDLE)", "--ca-bundle"])
        let missing = try h.run("envmount", ["mount", url, mnt, "--env", "tlsenv", "--cache-dir", cache, "--ca-bundle", h.dir + "/nope.pem"])
        assertRefusedInOneLine(missing, mentions: [h.dir + "/nope.pem", "cannot be read"])
        XCTAssertFalse(Harness.isMounted(mnt))

        // With the CA (the daemon inherits --ca-bundle: every chunk is fetched over TLS by it).
        try h.mount(url, mnt, cache: cache, ["--env", "tlsenv", "--ca-bundle", tls.ca, "--stream-read-ahead", "0"])
        XCTAssertEqual(try TreeFixture.readAll((mnt + "/pkg/big.bin").pathBytes), try TreeFixture.readAll((src + "/pkg/big.bin").pathBytes))
        XCTAssertEqual(try TreeFixture.readAll((mnt + "/pkg/mod.py").pathBytes), Array("VALUE = 42\n".utf8))
        let log = try String(contentsOfFile: nginx.accessLog, encoding: .utf8)
        XCTAssertTrue(log.contains("GET /chunks/"), "chunks came over TLS: \(log)")
    }

    func testPublishToS3OverTLSAndMountFromIt() throws {
        let moto = try MotoServer()
        stops.append { moto.stop() }
        let proxy = try TLSNginxServer(proxyTo: moto.endpoint, tls: tls)
        stops.append { proxy.stop() }
        try S3Store(url: "s3://tlsenvs", options: StoreOptions(), environment: moto.env).createBucket()
        var env = moto.env.merging(noCAVariables) { $1 }
        env["AWS_ENDPOINT_URL"] = proxy.url
        let src = try makeSource(), store = "s3://tlsenvs/prod"

        let refused = try h.run("envpublish", [src, store, "--quiet"], env: env)
        assertRefusedInOneLine(refused, mentions: ["tls", "system CA store", "--ca-bundle", "AWS_CA_BUNDLE"])
        let published = try h.run("envpublish", [src, store, "--quiet", "--ca-bundle", tls.ca], env: env)
        XCTAssertEqual(published.status, 0, published.stderr)

        env["AWS_CA_BUNDLE"] = tls.ca
        let mnt = h.dir + "/mnt"
        try h.mount(store, mnt, cache: h.dir + "/cache", ["--env", "tlsenv"], env: env)
        XCTAssertEqual(try TreeFixture.readAll((mnt + "/pkg/big.bin").pathBytes), try TreeFixture.readAll((src + "/pkg/big.bin").pathBytes))
        let log = try String(contentsOfFile: proxy.accessLog, encoding: .utf8)
        XCTAssertTrue(log.contains("GET /tlsenvs/prod/chunks/"), "chunks came through the TLS proxy")
    }
}
