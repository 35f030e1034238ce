// What a signature on a ref covers. A mount trusts nothing before the ref: the ref names the
// manifest by its SHA-256, the manifest names every chunk by its SHA-256. So signing the
// environment name, the manifest hash, the revision and the publish time binds every byte of
// the environment to the key, and a ref copied to another environment name, re-pointed to
// another manifest or given another revision no longer verifies.
import SysKit

public enum SignedRef {
    /// The exact bytes an Ed25519 signature on `refs/<env>` covers. The first line separates them
    /// from anything else the same key might sign; the fields are those of the ref, in order.
    ///
    ///     envmount-signed-ref 1
    ///     env <name>
    ///     manifest <64 hex>
    ///     revision <n>
    ///     published <unix seconds>
    public static func signedBytes(env: String, ref: Ref) -> [UInt8] {
        Array("envmount-signed-ref 1\nenv \(env)\nmanifest \(ref.manifest.hex)\nrevision \(ref.revision)\npublished \(ref.publishedAt)\n".utf8)
    }

    /// Whether `ref` carries a signature by `key` over its own fields for `env`.
    public static func verify(_ ref: Ref, env: String, key: Ed25519PublicKey) -> Bool {
        guard let sig = ref.signature, sig.keyID == key.keyID else { return false }
        return key.verify(sig.bytes, of: signedBytes(env: env, ref: ref))
    }
}

/// Signs refs as a publish writes them (`envpublish --sign KEYFILE`).
public struct RefSigner: Sendable {
    public let key: Ed25519PrivateKey

    public init(key: Ed25519PrivateKey) { self.key = key }

    /// Reads an unencrypted PEM Ed25519 private key (from `envpublish keygen` or
    /// `openssl genpkey -algorithm ed25519`).
    public init(keyFile: String) throws {
        let pem: [UInt8]
        do { pem = try FS.readFile(keyFile) } catch { throw Ed25519Error("cannot read signing key \(keyFile): \(error)") }
        do { key = try Ed25519PrivateKey(pem: pem) } catch { throw Ed25519Error("signing key \(keyFile): \(error)") }
    }

    public var keyID: String { key.publicKey.keyID }

    /// `ref` with this key's signature for `env` (any earlier signature replaced).
    public func sign(_ ref: Ref, env: String) throws -> Ref {
        var r = ref
        r.signature = nil
        let bytes = try key.sign(SignedRef.signedBytes(env: env, ref: r))
        r.signature = RefSignature(keyID: keyID, bytes: bytes)
        return r
    }
}
