import SysKit

/// `refs/<env>`: names an environment's current manifest. Written last by a publish, so a
/// reader sees either the old environment or the new one, never a half-published one.
///
///     envmount-ref 1
///     manifest <64 hex digits>
///     revision <n>
///     published <unix seconds>
///     signature-key <16 hex digits>      (signed refs only: the signing key's id)
///     signature <128 hex digits>         (Ed25519 over SignedRef.signedBytes)
///
/// Readers ignore lines they do not know, so clients that predate signatures still read a
/// signed ref. `encode()` of a decoded ref gives its bytes back, signature included, so a ref
/// kept elsewhere (a revision record) stays verifiable.
public struct Ref: Sendable, Equatable {
    public var manifest: ChunkID
    public var revision: UInt64
    public var publishedAt: Int64
    /// The publisher's signature over env, manifest, revision and publish time; nil if unsigned.
    public var signature: RefSignature?

    public init(manifest: ChunkID, revision: UInt64, publishedAt: Int64, signature: RefSignature? = nil) {
        self.manifest = manifest; self.revision = revision; self.publishedAt = publishedAt; self.signature = signature
    }

    public static func objectKey(env: String) -> String { "refs/\(env)" }
    public static func manifestKey(_ id: ChunkID) -> String { "manifests/\(id.hex)" }

    public func encode() -> [UInt8] {
        var s = "envmount-ref 1\nmanifest \(manifest.hex)\nrevision \(revision)\npublished \(publishedAt)\n"
        if let sig = signature { s += "signature-key \(sig.keyID)\nsignature \(sig.hex)\n" }
        return Array(s.utf8)
    }

    public static func decode(_ bytes: [UInt8]) throws -> Ref {
        guard bytes.count < 4096 else { throw FormatError("ref is too large") }
        let lines = String(decoding: bytes, as: UTF8.self).split(separator: "\n")
        guard lines.first == "envmount-ref 1" else { throw FormatError("not an envmount ref (version 1)") }
        var manifest: ChunkID?
        var revision: UInt64?
        var published: Int64 = 0
        var keyID: String?, signature: String?
        var seen = Set<Substring>()
        for line in lines.dropFirst() {
            let parts = line.split(separator: " ", maxSplits: 1)
            guard parts.count == 2 else { continue }
            switch parts[0] {
            case "manifest", "revision", "published", "signature-key", "signature":
                // One value per field: a second line must not change what was signed or shown.
                guard seen.insert(parts[0]).inserted else { throw FormatError("ref has two '\(parts[0])' lines") }
            default: break
            }
            switch parts[0] {
            case "manifest": manifest = ChunkID(hex: String(parts[1]))
            case "revision": revision = UInt64(parts[1])
            case "published": published = Int64(parts[1]) ?? 0
            case "signature-key": keyID = String(parts[1])
            case "signature": signature = String(parts[1])
            default: break
            }
        }
        guard let m = manifest, let r = revision else { throw FormatError("ref lacks a valid manifest or revision line") }
        var ref = Ref(manifest: m, revision: r, publishedAt: published)
        if keyID != nil || signature != nil {
            guard let k = keyID, let s = signature, let sig = RefSignature(keyID: k, hex: s) else {
                throw FormatError("ref has a malformed signature (it needs 'signature-key <16 hex>' and 'signature <128 hex>')")
            }
            ref.signature = sig
        }
        return ref
    }

    /// Environment names become object keys and file names: a conservative alphabet.
    public static func isValidEnvName(_ s: String) -> Bool {
        !s.isEmpty && s.utf8.count <= 128 && s.first != "." && s.first != "-"
            && s.utf8.allSatisfy { c in
                (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a)
                    || c == UInt8(ascii: "-") || c == UInt8(ascii: "_") || c == UInt8(ascii: ".")
            }
    }
}

/// An Ed25519 signature on a ref and the id of the key that made it.
public struct RefSignature: Sendable, Equatable {
    /// The first 16 hex digits of the SHA-256 of the raw public key (`Ed25519PublicKey.keyID`).
    public let keyID: String
    /// The 64 signature bytes.
    public let bytes: [UInt8]

    public init?(keyID: String, bytes: [UInt8]) {
        guard keyID.utf8.count == 16, Hex.decode(keyID) != nil, bytes.count == 64 else { return nil }
        self.keyID = keyID; self.bytes = bytes
    }

    public init?(keyID: String, hex: String) {
        guard let b = Hex.decode(hex) else { return nil }
        self.init(keyID: keyID, bytes: b)
    }

    public var hex: String { Hex.encode(bytes) }
}
