import TestSupport
import XCTest
import SysKit
import EnvFormat
import EnvStore
import EnvPublish

/// `envpublish --sign`: the ref a publish writes carries a signature over what it names.
final class SignedPublishTests: XCTestCase {
    var source: TempDir!

    override func setUpWithError() throws { source = try TempDir("signed") }
    override func tearDown() { source.remove() }

    func publish(_ store: MemoryStore, signer: RefSigner?) throws -> PublishResult {
        var options = PublishOptions(env: "ml")
        options.chunking = smallChunking
        options.workers = 2
        options.signer = signer
        return try Publisher(store: store, options: options, warn: { _ in }).publish(source: source.path)
    }

    func storedRef(_ store: MemoryStore) throws -> Ref { try Ref.decode(try store.get(Ref.objectKey(env: "ml"))) }

    func testSignedPublishesAndSigningAnUnchangedTree() throws {
        try Disk.write((source.path + "/a.bin").pathBytes, randomBytes(300_000, seed: 1))
        let store = MemoryStore()
        let a = RefSigner(key: try Ed25519PrivateKey.generate()), b = RefSigner(key: try Ed25519PrivateKey.generate())

        // Unsigned first, as every store was before signatures.
        XCTAssertNil(try publish(store, signer: nil).ref.signature)
        XCTAssertNil(try storedRef(store).signature)

        // The same tree with a key: still revision 1, now signed (so mounts that require the key work).
        let r1 = try publish(store, signer: a)
        XCTAssertTrue(r1.unchanged)
        XCTAssertEqual(r1.ref.revision, 1)
        let stored1 = try storedRef(store)
        XCTAssertEqual(stored1, r1.ref)
        XCTAssertTrue(SignedRef.verify(stored1, env: "ml", key: a.key.publicKey))
        XCTAssertFalse(SignedRef.verify(stored1, env: "other", key: a.key.publicKey))

        // A change: revision 2, signed, naming the new manifest.
        try Disk.write((source.path + "/b.bin").pathBytes, randomBytes(1000, seed: 2))
        let r2 = try publish(store, signer: a)
        XCTAssertEqual(r2.ref.revision, 2)
        let stored2 = try storedRef(store)
        XCTAssertTrue(SignedRef.verify(stored2, env: "ml", key: a.key.publicKey))
        XCTAssertEqual(stored2.manifest, r2.ref.manifest)
        XCTAssertEqual(ChunkID.of(try store.get(Ref.manifestKey(stored2.manifest))), stored2.manifest)

        // Unchanged with the same key writes nothing new; with another key, it is re-signed.
        let before = try store.get(Ref.objectKey(env: "ml"))
        XCTAssertTrue(try publish(store, signer: a).unchanged)
        XCTAssertEqual(try store.get(Ref.objectKey(env: "ml")), before)
        XCTAssertEqual(try publish(store, signer: b).ref.revision, 2)
        XCTAssertTrue(SignedRef.verify(try storedRef(store), env: "ml", key: b.key.publicKey))

        // Publishing without a key afterwards writes an unsigned ref: a mount that requires a
        // key refuses it, which is what an operator who forgot --sign should see.
        try Disk.write((source.path + "/c.bin").pathBytes, randomBytes(1000, seed: 3))
        XCTAssertNil(try publish(store, signer: nil).ref.signature)
        XCTAssertNil(try storedRef(store).signature)
    }
}
