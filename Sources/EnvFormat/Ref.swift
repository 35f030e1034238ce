/// `refs/<env>`: names an environment's current manifest. Written last by a publish, so a
/// reader sees either the old environment or the new one, never a half-published one.
///
///     envmount-ref 1
///     manifest <64 hex digits>
///     revision <n>
///     published <unix seconds>
public struct Ref: Sendable, Equatable {
    public var manifest: ChunkID
    public var revision: UInt64
    public var publishedAt: Int64

    public init(manifest: ChunkID, revision: UInt64, publishedAt: Int64) {
        self.manifest = manifest; self.revision = revision; self.publishedAt = publishedAt
    }

    public static func objectKey(env: String) -> String { "refs/\(env)" }
    public static func manifestKey(_ id: ChunkID) -> String { "manifests/\(id.hex)" }

    public func encode() -> [UInt8] {
        Array("envmount-ref 1\nmanifest \(manifest.hex)\nrevision \(revision)\npublished \(publishedAt)\n".utf8)
    }

    public static func decode(_ bytes: [UInt8]) throws -> Ref {
        guard bytes.count < 4096 else { throw FormatError("ref is too large") }
        let lines = String(decoding: bytes, as: UTF8.self).split(separator: "\n")
        guard lines.first == "envmount-ref 1" else { throw FormatError("not an envmount ref (version 1)") }
        var manifest: ChunkID?
        var revision: UInt64?
        var published: Int64 = 0
        for line in lines.dropFirst() {
            let parts = line.split(separator: " ", maxSplits: 1)
            guard parts.count == 2 else { continue }
            switch parts[0] {
            case "manifest": manifest = ChunkID(hex: String(parts[1]))
            case "revision": revision = UInt64(parts[1])
            case "published": published = Int64(parts[1]) ?? 0
            default: break
            }
        }
        guard let m = manifest, let r = revision else { throw FormatError("ref lacks a valid manifest or revision line") }
        return Ref(manifest: m, revision: r, publishedAt: published)
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
