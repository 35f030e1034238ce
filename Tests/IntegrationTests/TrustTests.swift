import EnvFormat
import EnvStore
import Foundation
import Glibc
import SysKit
import TestSupport
import XCTest

/// Signed environments through the real binaries and real FUSE mounts: keys from
/// `envpublish keygen` and from the openssl CLI, a wrong key, a missing signature, a swapped
/// manifest, a replayed older ref (fresh, offline and over HTTP), and trusted.d. Every refusal
/// must come before anything is mounted. Rollback state and trusted.d live under the test's
/// own directory (ENVMOUNT_STATE_DIR, ENVMOUNT_CONFIG_DIR), never in /etc or /var/lib.
final class TrustTests: MountTestCase {
    var env: [String: String] = [:]

    override func setUpWithError() throws {
        try super.setUpWithError()
        env = ["ENVMOUNT_STATE_DIR": h.dir + "/state", "ENVMOUNT_CONFIG_DIR": h.dir + "/etc"]
    }

    /// A small tree whose one file says which version it is.
    func writeTree(_ src: String, _ text: String) throws {
        try FS.makeDirectories(src + "/pkg")
        try writeFile((src + "/pkg/version.txt").pathBytes, Array(text.utf8))
    }

    func keygen(_ name: String) throws -> String {
        let key = h.dir + "/keys/" + name
        try FS.makeDirectories(h.dir + "/keys")
        let r = try h.run("envpublish", ["keygen", key])
        XCTAssertEqual(r.status, 0, r.stderr)
        return key
    }

    func publish(_ src: String, _ store: String, _ name: String, sign key: String?) throws {
        let r = try h.publish(src, store, ["--env", name] + (key.map { ["--sign", $0] } ?? []))
        XCTAssertEqual(r.status, 0, r.stderr)
    }

    /// A mount that must be refused: non-zero, the expected words on stderr in one line, and
    /// nothing mounted, no daemon left.
    func assertRefused(_ store: String, _ mnt: String, cache: String, _ extra: [String], _ words: String,
                       file: StaticString = #filePath, line: UInt = #line) throws {
        try FS.makeDirectories(mnt)
        let r = try h.run("envmount", ["mount", store, mnt, "--cache-dir", cache] + extra, env: env)
        if r.status == 0 { try h.adopt(mnt, r) }
        XCTAssertNotEqual(r.status, 0, "mounted although it should be refused: \(r.stdout)", file: file, line: line)
        XCTAssertTrue(r.stderr.contains(words), "expected '\(words)' in: \(r.stderr)", file: file, line: line)
        XCTAssertEqual(r.stderr.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: "\n").count, 1,
                       "one line: \(r.stderr)", file: file, line: line)
        XCTAssertFalse(Harness.isMounted(mnt), "mounted although refused", file: file, line: line)
    }

    func read(_ path: String) throws -> String { String(decoding: try FS.readFile(path), as: UTF8.self) }

    func testKeysFromKeygenAndFromTheOpenSSLCLIBothWork() throws {
        let store = h.dir + "/store", cache = h.dir + "/cache"
        let key = try keygen("team.key")
        XCTAssertEqual(try FS.stat(key).mode & 0o777, 0o600)
        XCTAssertTrue(try read(key + ".pub").hasPrefix("-----BEGIN PUBLIC KEY-----"))
        // keygen never overwrites a key by accident.
        let again = try h.run("envpublish", ["keygen", key])
        XCTAssertNotEqual(again.status, 0)
        XCTAssertTrue(again.stderr.contains("exists"), again.stderr)
        // The openssl CLI reads the key keygen wrote and derives the same public key.
        let derived = try h.run("/usr/bin/openssl", ["pkey", "-in", key, "-pubout"])
        XCTAssertEqual(derived.stdout, try read(key + ".pub"))

        let ossl = h.dir + "/keys/ossl.pem"
        XCTAssertEqual(try h.run("/usr/bin/openssl", ["genpkey", "-algorithm", "ed25519", "-out", ossl]).status, 0)
        XCTAssertEqual(try h.run("/usr/bin/openssl", ["pkey", "-in", ossl, "-pubout", "-out", ossl + ".pub"]).status, 0)

        for (name, k) in [("a", key), ("b", ossl)] {
            try writeTree(h.dir + "/src/" + name, "env \(name)\n")
            try publish(h.dir + "/src/" + name, store, name, sign: k)
            let mnt = h.dir + "/mnt-" + name
            try FS.makeDirectories(mnt)
            let r = try h.run("envmount", ["mount", store, mnt, "--env", name, "--cache-dir", cache, "--trust", k + ".pub"], env: env)
            XCTAssertEqual(r.status, 0, r.stderr)
            if r.status == 0 { try h.adopt(mnt, r) }
            let keyID = try Ed25519PublicKey(pem: try FS.readFile(k + ".pub")).keyID
            XCTAssertTrue(r.stdout.contains("signed by key \(keyID)"), r.stdout)
            XCTAssertEqual(try read(mnt + "/pkg/version.txt"), "env \(name)\n")
            let st = try h.run("envmount", ["status", mnt])
            XCTAssertTrue(st.stdout.contains("signed by key \(keyID)"), st.stdout)
            XCTAssertEqual(try h.unmount(mnt).status, 0)
        }
        // Each key accepts only its own environment.
        try assertRefused(store, h.dir + "/mnt-x", cache: cache, ["--env", "a", "--trust", ossl + ".pub"], "which is not trusted here")
    }

    func testWrongKeyAndMissingSignatureAreRefusedBeforeAnythingIsRead() throws {
        let store = h.dir + "/store", cache = h.dir + "/cache", mnt = h.dir + "/mnt"
        let good = try keygen("good.key"), other = try keygen("other.key")
        try writeTree(h.dir + "/src/signed", "signed\n")
        try writeTree(h.dir + "/src/plain", "plain\n")
        try publish(h.dir + "/src/signed", store, "signed", sign: good)
        try publish(h.dir + "/src/plain", store, "plain", sign: nil)

        try assertRefused(store, mnt, cache: cache, ["--env", "signed", "--trust", other + ".pub"], "is signed by key")
        try assertRefused(store, mnt, cache: cache, ["--env", "plain", "--trust", good + ".pub"], "is not signed")
        // Refused before the manifest was fetched or the ref cached.
        let signed = try Ref.decode(try FS.readFile(store + "/refs/signed"))
        XCTAssertFalse(FS.exists(cache + "/v1/manifests/" + signed.manifest.hex), "a manifest was read for a refused ref")
        XCTAssertEqual((try? FS.listDirectory(cache + "/v1/refs")) ?? [], [], "a refused ref was cached")
        // A missing or unreadable key file is an error, not a mount without checks.
        try assertRefused(store, mnt, cache: cache, ["--env", "plain", "--trust", h.dir + "/keys/nope.pub"], "nope.pub")
        try assertRefused(store, mnt, cache: cache, ["--env", "plain", "--trust", good], "not a PEM public key")

        // Without --trust (and no trusted.d) both mount as before.
        try h.mount(store, mnt, cache: cache, ["--env", "plain"], env: env)
        XCTAssertEqual(try read(mnt + "/pkg/version.txt"), "plain\n")
    }

    func testARefRepointedToAnotherManifestIsRefused() throws {
        let store = h.dir + "/store", cache = h.dir + "/cache", mnt = h.dir + "/mnt"
        let key = try keygen("k")
        try writeTree(h.dir + "/src/app", "the real one\n")
        try writeTree(h.dir + "/src/evil", "planted\n")
        try publish(h.dir + "/src/app", store, "app", sign: key)
        try publish(h.dir + "/src/evil", store, "evil", sign: nil)
        let real = try Ref.decode(try FS.readFile(store + "/refs/app"))
        let evil = try Ref.decode(try FS.readFile(store + "/refs/evil"))
        XCTAssertNotEqual(real.manifest, evil.manifest)

        // 1. The ref's manifest line re-pointed, the signature kept.
        var swapped = real
        swapped.manifest = evil.manifest
        try FS.writeFileAtomically(store + "/refs/app", swapped.encode())
        try assertRefused(store, mnt, cache: cache, ["--env", "app", "--trust", key + ".pub"], "was altered after signing")

        // 2. The signed ref intact, but the manifest object it names replaced by another one.
        try FS.writeFileAtomically(store + "/refs/app", real.encode())
        try FS.writeFileAtomically(store + "/" + Ref.manifestKey(real.manifest), try FS.readFile(store + "/" + Ref.manifestKey(evil.manifest)))
        try assertRefused(store, mnt, cache: cache, ["--env", "app", "--trust", key + ".pub"], "does not match its SHA-256")

        // 3. The signed ref copied to another environment's name.
        try FS.writeFileAtomically(store + "/refs/evil", real.encode())
        try assertRefused(store, mnt, cache: cache, ["--env", "evil", "--trust", key + ".pub"], "was altered after signing")
    }

    func testAReplayedOlderSignedRefIsRefusedAsARollbackFreshAndOffline() throws {
        let store = h.dir + "/store", cache = h.dir + "/cache", mnt = h.dir + "/mnt", src = h.dir + "/src/app"
        let key = try keygen("k")
        let trust = ["--env", "app", "--trust", key + ".pub"]
        try writeTree(src, "version 1 (vulnerable)\n")
        try publish(src, store, "app", sign: key)
        let rev1 = try FS.readFile(store + "/refs/app")
        try writeTree(src, "version 2 (fixed)\n")
        try publish(src, store, "app", sign: key)
        let rev2 = try FS.readFile(store + "/refs/app")
        XCTAssertEqual(try Ref.decode(rev2).revision, 2)

        try h.mount(store, mnt, cache: cache, trust, env: env)
        XCTAssertEqual(try read(mnt + "/pkg/version.txt"), "version 2 (fixed)\n")
        XCTAssertEqual(try h.unmount(mnt).status, 0)

        // The old ref, validly signed, written back: refused as a rollback.
        try FS.writeFileAtomically(store + "/refs/app", rev1)
        try assertRefused(store, mnt, cache: cache, trust, "refused as a rollback")
        // Clearing the chunk cache does not reset what was seen.
        XCTAssertEqual(try h.run("envmount", ["cache", "clear", "--all", "--cache-dir", cache]).status, 0)
        try assertRefused(store, mnt, cache: cache, trust, "older than revision 2")
        // The state is what remembers: a machine with none (here another --state-dir) takes the
        // older signed ref (trust on first use), and then remembers revision 1.
        let fresh = h.dir + "/fresh-state"
        try h.mount(store, mnt, cache: cache, trust + ["--state-dir", fresh], env: env)
        XCTAssertEqual(try read(mnt + "/pkg/version.txt"), "version 1 (vulnerable)\n")
        XCTAssertEqual(try h.unmount(mnt).status, 0)
        XCTAssertEqual(try FS.stat(fresh).mode & 0o777, 0o700)
        // A mount that does not ask for signatures still mounts it: the check belongs to the policy.
        try h.mount(store, mnt, cache: cache, ["--env", "app"], env: env)
        XCTAssertEqual(try read(mnt + "/pkg/version.txt"), "version 1 (vulnerable)\n")
        XCTAssertEqual(try h.unmount(mnt).status, 0)

        // Offline from the cache: the cached ref is checked the same way.
        try FS.writeFileAtomically(store + "/refs/app", rev2)
        try h.mount(store, mnt, cache: cache, trust, env: env)
        XCTAssertEqual(try read(mnt + "/pkg/version.txt"), "version 2 (fixed)\n")
        XCTAssertEqual(try h.unmount(mnt).status, 0)
        try FS.rename(store, store + ".stopped")
        let cachedRef = try FS.listDirectory(cache + "/v1/refs").map { cache + "/v1/refs/" + $0 + "/app" }.first { FS.exists($0) }!
        XCTAssertEqual(try FS.readFile(cachedRef), rev2)
        try FS.writeFileAtomically(cachedRef, rev1)
        try assertRefused(store, mnt, cache: cache, trust, "cached refs/app")
        var unsigned = try Ref.decode(rev2)
        unsigned.signature = nil
        try FS.writeFileAtomically(cachedRef, unsigned.encode())
        try assertRefused(store, mnt, cache: cache, trust, "is not signed")
        try FS.writeFileAtomically(cachedRef, rev2)
        let r = try h.run("envmount", ["mount", store, mnt, "--cache-dir", cache] + trust, env: env)
        XCTAssertEqual(r.status, 0, r.stderr)
        if r.status == 0 { try h.adopt(mnt, r) }
        XCTAssertTrue(r.stderr.contains("offline"), r.stderr)
        XCTAssertEqual(try read(mnt + "/pkg/version.txt"), "version 2 (fixed)\n")
    }

    func testTrustedDirectoryIsEnforcedOnEveryMountAndOverHTTP() throws {
        let store = h.dir + "/store", cache = h.dir + "/cache", mnt = h.dir + "/mnt"
        let key = try keygen("fleet.key")
        try writeTree(h.dir + "/src/app", "v1\n")
        try publish(h.dir + "/src/app", store, "app", sign: key)
        let rev1 = try FS.readFile(store + "/refs/app")
        try writeTree(h.dir + "/src/app", "v2\n")
        try publish(h.dir + "/src/app", store, "app", sign: key)
        try writeTree(h.dir + "/src/plain", "plain\n")
        try publish(h.dir + "/src/plain", store, "plain", sign: nil)
        let nginx = try NginxServer(serving: store)
        stops.append { nginx.stop() }

        // Nothing in trusted.d yet (the directory exists, empty): unsigned mounts as before.
        try FS.makeDirectories(h.dir + "/etc/trusted.d")
        try h.mount(nginx.url, mnt, cache: cache, ["--env", "plain"], env: env)
        XCTAssertEqual(try h.unmount(mnt).status, 0)

        try FS.writeFileAtomically(h.dir + "/etc/trusted.d/fleet.pub", try FS.readFile(key + ".pub"))
        try assertRefused(nginx.url, mnt, cache: cache, ["--env", "plain"], "is not signed")
        try h.mount(nginx.url, mnt, cache: cache, ["--env", "app"], env: env)
        XCTAssertEqual(try read(mnt + "/pkg/version.txt"), "v2\n")
        XCTAssertEqual(try h.unmount(mnt).status, 0)
        // The older signed ref served over HTTP: a rollback.
        try FS.writeFileAtomically(store + "/refs/app", rev1)
        try assertRefused(nginx.url, mnt, cache: cache, ["--env", "app"], "refused as a rollback")
        // A broken key in trusted.d stops mounts instead of turning checks off.
        try FS.writeFileAtomically(h.dir + "/etc/trusted.d/broken.pub", Array("junk\n".utf8))
        try assertRefused(nginx.url, mnt, cache: cache, ["--env", "plain"], "broken.pub")
    }

    func testSignedPublishToS3AndAnUnsignedRefThereIsRefused() throws {
        let moto = try MotoServer()
        stops.append { moto.stop() }
        let s3 = try S3Store(url: "s3://signed", options: StoreOptions(), environment: moto.env)
        try s3.createBucket()
        let store = "s3://signed/envs", cache = h.dir + "/cache", mnt = h.dir + "/mnt"
        let key = try keygen("k")
        try writeTree(h.dir + "/src/app", "from s3\n")
        let p = try h.run("envpublish", [h.dir + "/src/app", store, "--env", "app", "--sign", key, "--quiet"], env: moto.env)
        XCTAssertEqual(p.status, 0, p.stderr)
        XCTAssertTrue(p.stdout.contains("signed by key"), p.stdout)
        let both = env.merging(moto.env) { $1 }
        try h.mount(store, mnt, cache: cache, ["--env", "app", "--trust", key + ".pub"], env: both)
        XCTAssertEqual(try read(mnt + "/pkg/version.txt"), "from s3\n")
        XCTAssertEqual(try h.unmount(mnt).status, 0)

        // Whoever can write the bucket replaces the ref with an unsigned one of their own.
        let s3p = try S3Store(url: store, options: StoreOptions(), environment: moto.env)
        var forged = try Ref.decode(try s3p.get(Ref.objectKey(env: "app")))
        forged.signature = nil
        forged.revision += 1
        try s3p.put(Ref.objectKey(env: "app"), forged.encode())
        try FS.makeDirectories(mnt)
        let r = try h.run("envmount", ["mount", store, mnt, "--cache-dir", cache, "--env", "app", "--trust", key + ".pub"], env: both)
        if r.status == 0 { try h.adopt(mnt, r) }
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("refs/app in s3://signed/envs is not signed"), r.stderr)
        XCTAssertFalse(Harness.isMounted(mnt))
    }
}
