// A publish source that is an envmount mount, recognized from the mount table: a writable mount
// (`envmount mount … --writable DIR`) is published as its merged tree, reusing the base
// revision's chunks for every file its layer did not change (Publisher+Layer); a read-only mount
// is refused, since its tree is a published revision already and reading it whole through FUSE
// would fetch every chunk only to publish the same bytes again.
import SysKit
import EnvFormat

public struct WritableMount: Sendable {
    /// The overlay's mount point (resolved), the merged tree that is published.
    public var mountpoint: String
    /// The layer directory (DIR of `--writable DIR`) and its overlay upper directory.
    public var layerDir: String
    public var upper: String
    /// The store, environment and revision the layer was made over.
    public var record: LayerRecord

    public init(mountpoint: String, layerDir: String, upper: String, record: LayerRecord) {
        self.mountpoint = mountpoint; self.layerDir = layerDir; self.upper = upper; self.record = record
    }

    public enum Source: Sendable {
        /// Not an envmount mount point: an ordinary directory.
        case directory
        case writable(WritableMount)
        /// An envmount mount without a writable layer (FUSE, or a native overlay): environment name.
        case readOnly(env: String)
    }

    /// What `path` is: an ordinary directory, or the mount point of an envmount mount.
    public static func classify(_ path: String) throws -> Source {
        guard let real = try? FS.realpath(path), let entry = MountTable.find(real) else { return .directory }
        let prefix = LayerRecord.overlaySourcePrefix
        if entry.fsType == "fuse.envmount" {
            return .readOnly(env: entry.source.hasPrefix(prefix) ? String(entry.source.dropFirst(prefix.count)) : entry.source)
        }
        guard entry.fsType == "overlay", entry.source.hasPrefix(prefix) else { return .directory }
        let env = String(entry.source.dropFirst(prefix.count))
        guard let upper = entry.superOption("upperdir"), upper.hasSuffix("/upper") else { return .readOnly(env: env) }
        let dir = String(upper.dropLast("/upper".count))
        let recordPath = dir + "/" + LayerRecord.fileName
        let bytes: [UInt8]
        do { bytes = try FS.readFile(recordPath) } catch {
            throw PublishError.layer("\(real) is a writable envmount mount, but its layer record \(recordPath) cannot be read (\(error))")
        }
        guard let record = LayerRecord.decode(bytes) else {
            throw PublishError.layer("\(real) is a writable envmount mount, but \(recordPath) is not an envmount layer record")
        }
        return .writable(WritableMount(mountpoint: real, layerDir: dir, upper: upper, record: record))
    }

    /// The path of a file of the merged tree (relative to the mount point) in the upper directory.
    func upperPath(_ rel: [UInt8]) -> PathBytes {
        rel.isEmpty ? upper.pathBytes : upper.pathBytes + [UInt8(ascii: "/")] + rel
    }

    /// Whether the layer holds anything at `rel` (a copied-up or new file, a directory, a
    /// whiteout): if not, the merged tree shows the base revision's entry there, unchanged.
    func layerHolds(_ rel: [UInt8]) -> Bool {
        (try? FS.lstat(upperPath(rel))) != nil
    }
}
