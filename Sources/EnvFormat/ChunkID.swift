// EnvFormat: the on-store format, version 1. Chunks are named by the SHA-256 of their
// uncompressed bytes and stored as one zstd frame each; a manifest describes the tree and where
// each file's bytes live in those chunks; a ref names an environment's current manifest.
import SysKit

/// SHA-256 of a chunk's uncompressed bytes, held as four words so tables of them stay compact.
public struct ChunkID: Hashable, Sendable, Comparable, CustomStringConvertible {
    public var w0, w1, w2, w3: UInt64

    public init(bytes: [UInt8]) {
        precondition(bytes.count == 32)
        func word(_ i: Int) -> UInt64 {
            var v: UInt64 = 0
            for k in 0..<8 { v = v << 8 | UInt64(bytes[i * 8 + k]) }
            return v
        }
        w0 = word(0); w1 = word(1); w2 = word(2); w3 = word(3)
    }

    /// The id of `data[range]`.
    public static func of(_ data: [UInt8], _ range: Range<Int>? = nil) -> ChunkID {
        ChunkID(bytes: SHA256.hash(data, range ?? 0..<data.count))
    }

    public init?(hex: String) {
        guard hex.utf8.count == 64, let b = Hex.decode(hex) else { return nil }
        self.init(bytes: b)
    }

    public var bytes: [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(32)
        for w in [w0, w1, w2, w3] { for k in (0..<8).reversed() { out.append(UInt8(truncatingIfNeeded: w >> (UInt64(k) * 8))) } }
        return out
    }

    public var hex: String { Hex.encode(bytes) }
    public var description: String { hex }

    /// Store key: `chunks/<first two hex digits>/<64 hex digits>`.
    public var objectKey: String {
        let h = hex
        return "chunks/\(h.prefix(2))/\(h)"
    }

    public static func < (a: ChunkID, b: ChunkID) -> Bool {
        (a.w0, a.w1, a.w2, a.w3) < (b.w0, b.w1, b.w2, b.w3)
    }
}
