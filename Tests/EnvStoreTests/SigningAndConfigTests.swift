@testable import EnvStore
import Foundation
import TestSupport
import XCTest

final class SigningAndConfigTests: XCTestCase {
    /// The "GET Object" example of the AWS S3 SigV4 documentation (header-based auth).
    func testSigV4MatchesAWSExample() {
        let signer = SigV4Signer(accessKey: "AKIAIOSFODNN7EXAMPLE", secretKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                                 region: "us-east-1")
        let headers = signer.sign(method: "GET", host: "examplebucket.s3.amazonaws.com", path: "/test.txt", query: "",
                                  headers: [("Range", "bytes=0-9")], payloadHash: SigV4Signer.emptyPayloadHash,
                                  epoch: 1_369_353_600)
        let auth = headers.first { $0.0 == "Authorization" }?.1 ?? ""
        XCTAssertEqual(auth, "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
            + "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
            + "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41")
    }

    func testCanonicalQuerySortsAndEncodes() {
        XCTAssertEqual(SigV4Signer.canonicalQuery([("prefix", "envs/a b/"), ("list-type", "2"), ("continuation-token", "1/x+y=")]),
                       "continuation-token=1%2Fx%2By%3D&list-type=2&prefix=envs%2Fa%20b%2F")
        XCTAssertEqual(SigV4Signer.amzDate(0), "19700101T000000Z")
        XCTAssertEqual(SigV4Signer.amzDate(951_782_400 + 86399), "20000229T235959Z")
    }

    func testConfigFromEnvironmentAndFiles() throws {
        let dir = Servers.makeTempDir("aws")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try """
        [default]
        aws_access_key_id = DEFKEY
        aws_secret_access_key = defsecret
        [dev]
        aws_access_key_id=DEVKEY
        aws_secret_access_key=devsecret
        aws_session_token = devtoken
        """.write(toFile: dir + "/creds", atomically: true, encoding: .utf8)
        try """
        [default]
        region = eu-west-1
        [profile dev]
        region = auto
        endpoint_url = https://acct.r2.cloudflarestorage.com
        s3 =
          addressing_style = path
        """.write(toFile: dir + "/config", atomically: true, encoding: .utf8)
        let files = ["AWS_SHARED_CREDENTIALS_FILE": dir + "/creds", "AWS_CONFIG_FILE": dir + "/config", "HOME": "/nonexistent"]

        var c = AWSConfig.resolve(options: StoreOptions(), environment: files)
        XCTAssertEqual(c.credentials?.accessKeyID, "DEFKEY")
        XCTAssertEqual(c.region, "eu-west-1")
        XCTAssertEqual(c.endpoint, "https://s3.eu-west-1.amazonaws.com")
        XCTAssertFalse(c.customEndpoint)

        c = AWSConfig.resolve(options: StoreOptions(), environment: files.merging(["AWS_PROFILE": "dev"]) { $1 })
        XCTAssertEqual(c.credentials, AWSCredentials(accessKeyID: "DEVKEY", secretAccessKey: "devsecret", sessionToken: "devtoken",
                                                     source: dir + "/creds [dev]"))
        XCTAssertEqual(c.region, "auto")
        XCTAssertEqual(c.endpoint, "https://acct.r2.cloudflarestorage.com")

        var env = files
        env["AWS_ACCESS_KEY_ID"] = "ENVKEY"
        env["AWS_SECRET_ACCESS_KEY"] = "envsecret"
        env["AWS_REGION"] = "ap-south-1"
        env["AWS_ENDPOINT_URL"] = "http://127.0.0.1:9000/"
        var o = StoreOptions()
        c = AWSConfig.resolve(options: o, environment: env)
        XCTAssertEqual(c.credentials?.accessKeyID, "ENVKEY")
        XCTAssertEqual(c.region, "ap-south-1")
        XCTAssertEqual(c.endpoint, "http://127.0.0.1:9000")
        o.region = "us-west-2"
        o.endpoint = "http://127.0.0.1:9999"
        c = AWSConfig.resolve(options: o, environment: env)
        XCTAssertEqual(c.region, "us-west-2")
        XCTAssertEqual(c.endpoint, "http://127.0.0.1:9999")

        c = AWSConfig.resolve(options: StoreOptions(), environment: ["HOME": "/nonexistent"])
        XCTAssertNil(c.credentials)
        XCTAssertEqual(c.region, "us-east-1")
    }

    func testRetryPolicyDefaults() {
        let p = RetryPolicy()
        XCTAssertEqual(p.deadline, 60)
        XCTAssertEqual(p.attemptsPerMirror, 3)
    }
}
