// Signed refs and the policy a mount applies to them: canonical bytes, round trips, every
// field bound by the signature, keys from trusted.d, and the rollback state.
import EnvFormat
import Foundation
import SysKit
import XCTest

final class TrustPolicyTests: XCTestCase {
    let m1 = ChunkID.of(Array("manifest one".utf8)), m2 = ChunkID.of(Array("manifest two".utf8))
    var dir = ""

    override func setUpWithError() throws {
        dir = NSTemporaryDirectory() + "envmount-trust-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FS.makeDirectories(dir, mode: 0o700)
    }

    override func tearDown() { try? FS.removeTree(dir) }

    func testSignedBytesAreExactlyTheDocumentedText() {
        let r = Ref(manifest: m1, revision: 12, publishedAt: 1_700_000_123)
        XCTAssertEqual(String(decoding: SignedRef.signedBytes(env: "torch", ref: r), as: UTF8.self),
                       "envmount-signed-ref 1\nenv torch\nmanifest \(m1.hex)\nrevision 12\npublished 1700000123\n")
        // The signature itself is not part of what is signed.
        var s = r
        s.signature = RefSignature(keyID: "0123456789abcdef", bytes: [UInt8](repeating: 7, count: 64))
        XCTAssertEqual(SignedRef.signedBytes(env: "torch", ref: s), SignedRef.signedBytes(env: "torch", ref: r))
    }

    func testSignedRefRoundTripsByteForByteAndOldReadersSeeTheSameRef() throws {
        let signer = RefSigner(key: try Ed25519PrivateKey.generate())
        let ref = try signer.sign(Ref(manifest: m1, revision: 3, publishedAt: 99), env: "ml")
        let bytes = ref.encode()
        XCTAssertEqual(String(decoding: bytes, as: UTF8.self),
                       "envmount-ref 1\nmanifest \(m1.hex)\nrevision 3\npublished 99\nsignature-key \(signer.keyID)\nsignature \(ref.signature!.hex)\n")
        let back = try Ref.decode(bytes)
        XCTAssertEqual(back, ref)
        XCTAssertEqual(back.encode(), bytes, "re-encoding a decoded signed ref must give its bytes back")
        XCTAssertTrue(SignedRef.verify(back, env: "ml", key: signer.key.publicKey))
        // What a reader that knows nothing of signatures takes from it: the same three fields.
        var plain = back
        plain.signature = nil
        XCTAssertEqual(plain, Ref(manifest: m1, revision: 3, publishedAt: 99))
        // Ed25519 is deterministic: signing again gives the same bytes.
        XCTAssertEqual(try signer.sign(back, env: "ml"), ref)
    }

    func testMalformedOrDuplicatedSignatureLinesAreRefused() throws {
        let sig = String(repeating: "ab", count: 64), head = "envmount-ref 1\nmanifest \(m1.hex)\nrevision 1\n"
        for bad in [
            head + "signature \(sig)\n",                                  // no key id
            head + "signature-key 0123456789abcdef\n",                    // no signature
            head + "signature-key 0123456789abcdef\nsignature \(sig.dropLast(2))\n",
            head + "signature-key 0123456789abcdeg\nsignature \(sig)\n",
            head + "signature-key 0123456789abcde\nsignature \(sig)\n",
            head + "signature-key 0123456789abcdef\nsignature \(sig.uppercased())\n",
            head + "manifest \(m2.hex)\n",                                 // a second manifest line
            head + "revision 2\n",
        ] {
            XCTAssertThrowsError(try Ref.decode(Array(bad.utf8)), bad) { XCTAssertTrue($0 is FormatError) }
        }
    }

    func testEveryFieldIsBoundBySignatureAndKey() throws {
        let signer = RefSigner(key: try Ed25519PrivateKey.generate())
        let policy = TrustPolicy(keys: [TrustedKey(key: signer.key.publicKey, file: "k.pub")], state: RollbackState(directory: dir + "/state"))
        let good = try signer.sign(Ref(manifest: m1, revision: 5, publishedAt: 1000), env: "ml")
        XCTAssertEqual(try policy.admit(good, env: "ml", store: "s", source: "refs/ml")?.file, "k.pub")

        var altered: [(String, Ref, String)] = []
        var r = good; r.manifest = m2; altered.append(("manifest", r, "ml"))
        r = good; r.revision = 6; altered.append(("revision", r, "ml"))
        r = good; r.publishedAt = 1001; altered.append(("time", r, "ml"))
        altered.append(("environment", good, "ml2"))
        for (what, ref, env) in altered {
            XCTAssertThrowsError(try policy.admit(ref, env: env, store: "s", source: "refs/\(env)"), what) { e in
                guard case .badSignature = e as? TrustError else { return XCTFail("\(what): \(e)") }
                XCTAssertTrue("\(e)".contains("altered"), "\(e)")
            }
        }
        var unsigned = good; unsigned.signature = nil
        XCTAssertThrowsError(try policy.admit(unsigned, env: "ml", store: "s", source: "refs/ml")) { e in
            guard case .unsigned = e as? TrustError else { return XCTFail("\(e)") }
            XCTAssertTrue("\(e)".hasPrefix("refs/ml is not signed"), "\(e)")
        }
        let stranger = try RefSigner(key: Ed25519PrivateKey.generate()).sign(good, env: "ml")
        XCTAssertThrowsError(try policy.admit(stranger, env: "ml", store: "s", source: "refs/ml")) { e in
            guard case .untrustedKey = e as? TrustError else { return XCTFail("\(e)") }
        }
        // A forged signature that claims the trusted key's id.
        var forged = stranger
        forged.signature = RefSignature(keyID: signer.keyID, bytes: stranger.signature!.bytes)
        XCTAssertThrowsError(try policy.admit(forged, env: "ml", store: "s", source: "refs/ml")) { e in
            guard case .badSignature = e as? TrustError else { return XCTFail("\(e)") }
        }
        // No key: anything is accepted and nothing is remembered.
        XCTAssertNil(try TrustPolicy.none.admit(unsigned, env: "ml", store: "s", source: "refs/ml"))
    }

    func testRollbackStateRefusesOlderAndRewrittenRevisions() throws {
        let signer = RefSigner(key: try Ed25519PrivateKey.generate())
        let state = RollbackState(directory: dir + "/state")
        var policy = TrustPolicy(keys: [TrustedKey(key: signer.key.publicKey, file: "k.pub")], state: state)
        func ref(_ rev: UInt64, _ m: ChunkID) throws -> Ref { try signer.sign(Ref(manifest: m, revision: rev, publishedAt: 10), env: "ml") }

        try policy.admit(try ref(2, m1), env: "ml", store: "s3://b/p", source: "refs/ml")
        XCTAssertEqual(try state.seen(store: "s3://b/p", env: "ml"), RollbackState.Seen(revision: 2, manifest: m1))
        XCTAssertThrowsError(try policy.admit(try ref(1, m2), env: "ml", store: "s3://b/p", source: "refs/ml")) { e in
            guard case .rollback(_, 1, 2, _) = e as? TrustError else { return XCTFail("\(e)") }
            XCTAssertTrue("\(e)".contains("refused as a rollback"), "\(e)")
        }
        XCTAssertThrowsError(try policy.admit(try ref(2, m2), env: "ml", store: "s3://b/p", source: "refs/ml")) { e in
            guard case .rewritten = e as? TrustError else { return XCTFail("\(e)") }
        }
        // The same revision again, another environment, another store: all fine.
        try policy.admit(try ref(2, m1), env: "ml", store: "s3://b/p", source: "refs/ml")
        try policy.admit(try signer.sign(Ref(manifest: m2, revision: 1, publishedAt: 10), env: "cv"), env: "cv", store: "s3://b/p", source: "refs/cv")
        try policy.admit(try ref(1, m2), env: "ml", store: "s3://other", source: "refs/ml")

        // An older revision on purpose: accepted, and the state is not lowered.
        policy.allowOlder = true
        try policy.admit(try ref(1, m2), env: "ml", store: "s3://b/p", source: "refs/ml")
        XCTAssertEqual(try state.seen(store: "s3://b/p", env: "ml")?.revision, 2)
        XCTAssertThrowsError(try policy.admit(try ref(2, m2), env: "ml", store: "s3://b/p", source: "refs/ml"), "allowOlder never lets a revision be rewritten")
        policy.allowOlder = false
        try policy.admit(try ref(3, m2), env: "ml", store: "s3://b/p", source: "refs/ml")
        XCTAssertEqual(try state.seen(store: "s3://b/p", env: "ml"), RollbackState.Seen(revision: 3, manifest: m2))
        XCTAssertEqual(try FS.stat(state.file(store: "s3://b/p", env: "ml")).mode & 0o777, 0o600)

        // A damaged record fails closed.
        try FS.writeFileAtomically(state.file(store: "s3://b/p", env: "ml"), Array("garbage".utf8))
        XCTAssertThrowsError(try policy.admit(try ref(4, m1), env: "ml", store: "s3://b/p", source: "refs/ml")) { e in
            XCTAssertTrue("\(e)".contains("damaged"), "\(e)")
        }
    }

    func testAStateDirectoryOthersCanWriteIsRefused() throws {
        let signer = RefSigner(key: try Ed25519PrivateKey.generate())
        try FS.makeDirectories(dir + "/open")
        try FS.chmod((dir + "/open").pathBytes, 0o777)
        let policy = TrustPolicy(keys: [TrustedKey(key: signer.key.publicKey, file: "k.pub")], state: RollbackState(directory: dir + "/open"))
        XCTAssertThrowsError(try policy.admit(try signer.sign(Ref(manifest: m1, revision: 1, publishedAt: 1), env: "ml"), env: "ml", store: "s", source: "refs/ml")) { e in
            XCTAssertTrue("\(e)".contains("writable by group or others"), "\(e)")
        }
        let fresh = RollbackState(directory: dir + "/new/state")
        try TrustPolicy(keys: policy.keys, state: fresh).admit(try signer.sign(Ref(manifest: m1, revision: 1, publishedAt: 1), env: "ml"), env: "ml", store: "s", source: "refs/ml")
        XCTAssertEqual(try FS.stat(dir + "/new/state").mode & 0o777, 0o700)
    }

    func testKeysComeFromTrustFilesAndTrustedD() throws {
        let a = try Ed25519PrivateKey.generate(), b = try Ed25519PrivateKey.generate()
        try FS.writeFileAtomically(dir + "/a.pub", try a.publicKey.pem())
        // No trusted.d: only what is named.
        var p = try TrustPolicy.load(trustFiles: [], configDirectory: dir + "/etc", stateDirectory: dir + "/state")
        XCTAssertFalse(p.isEnforced)
        XCTAssertNil(p.state)
        p = try TrustPolicy.load(trustFiles: [dir + "/a.pub"], configDirectory: dir + "/etc", stateDirectory: dir + "/state")
        XCTAssertEqual(p.keys.map(\.key), [a.publicKey])
        XCTAssertEqual(p.state?.directory, dir + "/state")

        try FS.makeDirectories(dir + "/etc/trusted.d")
        XCTAssertFalse(try TrustPolicy.load(trustFiles: [], configDirectory: dir + "/etc").isEnforced, "an empty trusted.d requires nothing")
        try FS.writeFileAtomically(dir + "/etc/trusted.d/b.pub", try b.publicKey.pem())
        try FS.writeFileAtomically(dir + "/etc/trusted.d/README", Array("not a key".utf8))
        p = try TrustPolicy.load(trustFiles: [dir + "/a.pub"], configDirectory: dir + "/etc", stateDirectory: dir + "/state")
        XCTAssertEqual(Set(p.keys.map(\.key)), [a.publicKey, b.publicKey])
        XCTAssertTrue(try TrustPolicy.load(trustFiles: [], configDirectory: dir + "/etc", stateDirectory: dir + "/s").isEnforced)

        // A key that cannot be read turns checking off nowhere: it is an error naming the file.
        try FS.writeFileAtomically(dir + "/etc/trusted.d/broken.pub", Array("-----BEGIN PUBLIC KEY-----\nxx\n".utf8))
        XCTAssertThrowsError(try TrustPolicy.load(trustFiles: [], configDirectory: dir + "/etc", stateDirectory: dir + "/s")) {
            XCTAssertTrue("\($0)".contains("trusted.d/broken.pub"), "\($0)")
        }
        XCTAssertThrowsError(try TrustPolicy.load(trustFiles: [dir + "/missing.pub"], configDirectory: dir + "/none")) {
            XCTAssertTrue("\($0)".contains("missing.pub"), "\($0)")
        }
        XCTAssertThrowsError(try TrustPolicy.load(trustFiles: [dir + "/a.pub.nope"], configDirectory: dir + "/none"))

        // Anyone who can add a key there decides what mounts run: group/other-writable is refused.
        try FS.unlink(dir + "/etc/trusted.d/broken.pub")
        try FS.chmod((dir + "/etc/trusted.d/b.pub").pathBytes, 0o666)
        XCTAssertThrowsError(try TrustPolicy.load(trustFiles: [], configDirectory: dir + "/etc", stateDirectory: dir + "/s")) {
            XCTAssertTrue("\($0)".contains("b.pub is writable by group or others"), "\($0)")
        }
        try FS.chmod((dir + "/etc/trusted.d/b.pub").pathBytes, 0o644)
        try FS.chmod((dir + "/etc/trusted.d").pathBytes, 0o777)
        XCTAssertThrowsError(try TrustPolicy.load(trustFiles: [], configDirectory: dir + "/etc", stateDirectory: dir + "/s")) {
            XCTAssertTrue("\($0)".contains("trusted.d is writable by group or others"), "\($0)")
        }
        try FS.chmod((dir + "/etc/trusted.d").pathBytes, 0o755)
        XCTAssertEqual(try TrustPolicy.load(trustFiles: [], configDirectory: dir + "/etc", stateDirectory: dir + "/s").keys.map(\.key), [b.publicKey])
    }

    func testMaxAgeRefusesStaleSignedRefs() throws {
        let signer = RefSigner(key: try Ed25519PrivateKey.generate())
        var policy = TrustPolicy(keys: [TrustedKey(key: signer.key.publicKey, file: "k.pub")], state: RollbackState(directory: dir + "/state"))
        policy.maxAge = 3600
        let r = try signer.sign(Ref(manifest: m1, revision: 1, publishedAt: 10_000), env: "ml")
        try policy.admit(r, env: "ml", store: "s", source: "refs/ml", now: 10_000 + 3600)
        XCTAssertThrowsError(try policy.admit(r, env: "ml", store: "s", source: "refs/ml", now: 10_000 + 3601)) { e in
            guard case .tooOld = e as? TrustError else { return XCTFail("\(e)") }
        }
    }
}
