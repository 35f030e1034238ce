import CurlKit
import EnvStore
import Foundation
import SysKit
import TestSupport
import XCTest

/// What HTTP caches between a store and a fleet see: objects written to S3 carry Cache-Control
/// (immutable for content-addressed objects, no-cache for refs), ref GETs ask for revalidation,
/// and every other GET is a plain GET of the whole object.
final class CacheCitizenTests: XCTestCase {
    func testS3ObjectsCarryCacheControl() throws {
        let moto = try MotoServer()
        defer { moto.stop() }
        let s = try S3Store(url: "s3://cc-bucket/team", options: StoreOptions(), environment: moto.env)
        try s.createBucket()
        let chunk = StoreContract.chunkKey([1, 2, 3])
        let keys = [chunk: "public, max-age=31536000, immutable",
                    "manifests/" + String(repeating: "ab", count: 32): "public, max-age=31536000, immutable",
                    "profiles/env/" + String(repeating: "ab", count: 32) + "/default": "public, max-age=31536000, immutable",
                    "refs/env": "no-cache"]
        for k in keys.keys { try s.put(k, [1, 2, 3]) }
        for (k, want) in keys {
            // A signed HEAD of the object, as any S3 client (or a cache in front) would see it.
            let r = try CurlClient.shared.perform(CurlRequest(
                method: .head, url: "\(moto.endpoint)/cc-bucket/team/\(k)",
                headers: [(name: "x-amz-content-sha256", value: "UNSIGNED-PAYLOAD")],
                sigv4: CurlSigV4(accessKey: moto.env["AWS_ACCESS_KEY_ID"]!, secretKey: moto.env["AWS_SECRET_ACCESS_KEY"]!, region: "us-east-1")))
            XCTAssertEqual(r.status, 200, k)
            XCTAssertEqual(r.header("Cache-Control"), want, k)
        }
    }

    func testGETsArePlainAndRefsAskForRevalidation() throws {
        let dir = Servers.makeTempDir("cc-www")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let payload = StoreContract.binary(100_000, seed: 5)
        let chunk = StoreContract.chunkKey(payload)
        let origin = DirectoryStore(root: dir)
        try origin.put(chunk, payload)
        try origin.put("refs/env", Array("ref".utf8))
        let nginx = try NginxServer(serving: dir)
        defer { nginx.stop() }
        let s = try HTTPStore(urls: [nginx.url], options: StoreOptions())
        XCTAssertEqual(try s.get(chunk), payload)
        XCTAssertEqual(try s.get("refs/env"), Array("ref".utf8))
        let lines = try String(contentsOfFile: nginx.accessLog, encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(lines.count, 2)
        XCTAssertTrue(lines[0].contains("\"GET /\(chunk) HTTP/1.1\" 200 100000"), String(lines[0]))
        XCTAssertTrue(lines[0].hasSuffix("cc=\"-\" range=\"-\""), String(lines[0]))
        XCTAssertTrue(lines[1].contains("\"GET /refs/env HTTP/1.1\" 200"), String(lines[1]))
        XCTAssertTrue(lines[1].hasSuffix("cc=\"no-cache\" range=\"-\""), String(lines[1]))
    }
}
