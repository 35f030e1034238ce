/// `profiles/<env>/<manifest hex>/<name>`: the chunks a recorded run read, in the order it
/// first read them, so a later machine can fetch exactly those, in that order, at full speed.
///
///     envmount-profile 1
///     manifest <64 hex>
///     <64 hex chunk id>
///     ...
public struct Profile: Sendable, Equatable {
    public var manifest: ChunkID
    public var chunks: [ChunkID]

    public init(manifest: ChunkID, chunks: [ChunkID]) {
        self.manifest = manifest
        self.chunks = chunks
    }

    public static func objectKey(env: String, manifest: ChunkID, name: String) -> String {
        "profiles/\(env)/\(manifest.hex)/\(name)"
    }

    public func encode() -> [UInt8] {
        var s = "envmount-profile 1\nmanifest \(manifest.hex)\n"
        for c in chunks { s += c.hex + "\n" }
        return Array(s.utf8)
    }

    public static func decode(_ bytes: [UInt8]) throws -> Profile {
        let lines = String(decoding: bytes, as: UTF8.self).split(separator: "\n")
        guard lines.first == "envmount-profile 1", lines.count >= 2, lines[1].hasPrefix("manifest "),
              let m = ChunkID(hex: String(lines[1].dropFirst("manifest ".count))) else {
            throw FormatError("not an envmount profile (version 1)")
        }
        var chunks: [ChunkID] = []
        for l in lines.dropFirst(2) {
            guard let c = ChunkID(hex: String(l)) else { throw FormatError("profile line is not a chunk id: \(l.prefix(80))") }
            chunks.append(c)
        }
        return Profile(manifest: m, chunks: chunks)
    }
}
