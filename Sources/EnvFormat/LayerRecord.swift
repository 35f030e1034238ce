/// What a writable layer directory records about the environment it was made over
/// (`DIR/envmount-layer`, written by `envmount mount … --writable DIR`): the store, the
/// environment, and the manifest and revision under the layer. envmount pins a remount to that
/// revision; envpublish reads it to publish the layer's merged tree as a new revision, reusing
/// the base manifest's chunks for every file the layer did not change.
public struct LayerRecord: Equatable, Sendable {
    public var store: String
    public var env: String
    public var manifest: ChunkID
    public var revision: UInt64

    /// The record's file name inside the layer directory.
    public static let fileName = "envmount-layer"
    /// The source an envmount overlay shows in mountinfo (`envmount:ENV`).
    public static let overlaySourcePrefix = "envmount:"

    public init(store: String, env: String, manifest: ChunkID, revision: UInt64) {
        self.store = store; self.env = env; self.manifest = manifest; self.revision = revision
    }

    public func encode() -> [UInt8] {
        Array("envmount-layer 1\nstore \(store)\nenv \(env)\nmanifest \(manifest.hex)\nrevision \(revision)\n".utf8)
    }

    public static func decode(_ bytes: [UInt8]) -> LayerRecord? {
        let lines = String(decoding: bytes, as: UTF8.self).split(separator: "\n")
        guard bytes.count < 8192, lines.first == "envmount-layer 1" else { return nil }
        var f: [Substring: String] = [:]
        for line in lines.dropFirst() {
            let parts = line.split(separator: " ", maxSplits: 1)
            if parts.count == 2 { f[parts[0]] = String(parts[1]) }
        }
        guard let s = f["store"], let e = f["env"], let m = f["manifest"].flatMap(ChunkID.init(hex:)),
              let r = f["revision"].flatMap(UInt64.init) else { return nil }
        return LayerRecord(store: s, env: e, manifest: m, revision: r)
    }
}
