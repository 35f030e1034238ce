import EnvFormat
import Glibc
import Synchronization
import SysKit

/// A local writable layer over a mounted environment (`envmount mount … --writable DIR`).
///
/// The daemon mounts the FUSE filesystem at DIR/lower and a kernel overlayfs at the user's mount
/// point, with DIR/upper and DIR/work as its upper and work directories. Writes (`pip install`,
/// `pip uninstall`'s whiteouts, Python's bytecode) land in DIR/upper; the published environment
/// underneath stays read-only and verified. DIR/envmount-layer records the environment the layer
/// was made over (store, name, manifest, revision): a remount with the same DIR mounts that same
/// revision, so what was installed keeps matching what it was installed over, and a DIR made for
/// another environment is refused. The overlay's options keep the upper directory plain:
/// `redirect_dir=off` (renaming a published directory copies it up; pip falls back to a copy),
/// `index=off` and `metacopy=off` (no file handles or xattrs that tie the layer to one FUSE
/// mount's inode numbers), so the layer survives a remount and a daemon restart.
public struct WritableLayer: Sendable {
    public let dir: String
    public var upper: String { dir + "/upper" }
    public var work: String { dir + "/work" }
    public var lower: String { dir + "/lower" }
    var recordPath: String { dir + "/" + LayerRecord.fileName }

    /// The overlay's source in mountinfo: how `status`, `unmount` and `reset` recognize it.
    public static let overlaySourcePrefix = LayerRecord.overlaySourcePrefix
    /// The FUSE mount's fsname under a writable layer: a hidden lower, not a mount users address.
    public static let lowerSourcePrefix = "envmount-lower:"

    /// What DIR/envmount-layer holds (EnvFormat: envpublish reads it too).
    typealias Record = LayerRecord

    /// The layer at `dir` (made absolute; created later by `prepare`).
    public init(dir: String) throws {
        let abs = Mountpoints.absolute(dir)
        // overlayfs options are separated by ',' and lower layers by ':'; '\' escapes them.
        if abs.contains(where: { $0 == "," || $0 == ":" || $0 == "\\" || $0 == "\n" }) {
            throw MountError("writable layer directory \(abs) holds ',', ':', '\\' or a newline, which overlayfs options cannot carry; choose another path")
        }
        self.dir = (try? FS.realpath(abs)) ?? abs
    }

    /// The layer an overlay mount of ours was made with (its upperdir's parent).
    public static func of(_ entry: Mountpoints.Entry) -> WritableLayer? { EnvOverlay.of(entry)?.layer }

    func readRecord() throws -> Record? {
        guard FS.exists(recordPath) else { return nil }
        guard let r = Record.decode(try FS.readFile(recordPath)) else {
            throw MountError("\(recordPath) is not an envmount layer record; \(dir) was not made by envmount mount --writable")
        }
        return r
    }

    /// Refuses a DIR made for another environment or store, one in use by another mount, one
    /// that overlaps the mount point, and a non-empty directory that is not a layer. Returns the
    /// record when DIR already holds a layer.
    func check(store: String, env: String, mountpoint: String) throws -> Record? {
        if ProcessControl.userID != 0 {
            throw MountError("--writable needs root: the kernel mounts overlayfs for root only")
        }
        if dir == mountpoint || dir.hasPrefix(mountpoint + "/") || mountpoint.hasPrefix(dir + "/") {
            throw MountError("writable layer directory \(dir) and mount point \(mountpoint) must not contain one another")
        }
        if let st = try? FS.stat(dir), st.kind != .directory {
            throw MountError("writable layer directory \(dir) is not a directory")
        }
        if let m = Mountpoints.find(lower) {
            if (try? FS.fileSystemType(lower)) == nil {
                // Left by a killed daemon: nothing can use it.
                try? FS.lazyUnmount(lower)
                return try check(store: store, env: env, mountpoint: mountpoint)
            }
            throw MountError("writable layer \(dir) is in use (\(m.source) is mounted on \(lower)); unmount that mount first")
        }
        guard let record = try readRecord() else {
            let known: Set<String> = ["upper", "work", "lower"]
            if let names = try? FS.listDirectory(dir), let other = names.first(where: { !known.contains($0) }) {
                throw MountError("writable layer directory \(dir) is not empty (it holds \(other)) and is no envmount layer; give an empty or new directory")
            }
            return nil
        }
        if record.env != env || record.store != store {
            throw MountError("\(dir) is the writable layer of environment \(record.env) from \(record.store), not \(env) from \(store); "
                             + "use another directory, or discard it with `envmount reset --writable \(dir)`")
        }
        return record
    }

    /// The environment to mount under this layer: the revision the layer was made over when DIR
    /// holds one (the store's ref may have moved on since), else what the store names now.
    func pin(_ opened: OpenedEnvironment, storeSpec: String, mountpoint: String, resolver: EnvironmentResolver,
             announce: Bool, explicitRevision: Bool = false) throws -> OpenedEnvironment {
        guard let r = try check(store: storeSpec, env: opened.env, mountpoint: mountpoint), r.manifest != opened.ref.manifest else {
            return opened
        }
        if explicitRevision {
            throw MountError("the writable layer \(dir) was made over revision \(r.revision) of \(opened.env), not revision \(opened.ref.revision); mount that revision, or discard the layer with `envmount reset --writable \(dir)`")
        }
        var pinned = opened
        pinned.manifest = try resolver.loadManifest(r.manifest)
        pinned.ref = Ref(manifest: r.manifest, revision: r.revision, publishedAt: 0)
        if announce {
            Console.error("envmount: the writable layer \(dir) was made over revision \(r.revision) of \(opened.env); mounting that revision, not the store's current \(opened.ref.revision) (discard the layer with `envmount reset` to follow the store)")
        }
        return pinned
    }

    /// Creates DIR, DIR/upper, DIR/work and DIR/lower.
    func prepare() throws {
        for d in [dir, upper, work, lower] { try FS.makeDirectories(d, mode: 0o755) }
    }

    func writeRecord(_ r: Record) throws {
        try FS.writeFileAtomically(recordPath, r.encode())
    }


    /// Empties DIR/upper and DIR/work: everything written through the layer is gone.
    public func clear() throws {
        for d in [upper, work] {
            try? FS.removeTree(d)
            try FS.makeDirectories(d, mode: 0o755)
        }
    }

    /// Discards an unmounted layer whole, record included: the next mount with this DIR
    /// follows the store's current revision.
    public func discard() throws {
        if let m = Mountpoints.find(lower) {
            throw MountError("writable layer \(dir) is mounted (\(m.source) on \(lower)); use `envmount reset MOUNTPOINT`, or unmount first")
        }
        guard try readRecord() != nil else { throw MountError("\(dir) holds no envmount writable layer (no \(recordPath))") }
        try? FS.removeTree(upper)
        try? FS.removeTree(work)
        try? FS.rmdir(lower.pathBytes)
        try FS.unlink(recordPath)
    }
}

/// The overlay envmount puts at a mount point: a writable layer (upper) and/or a materialized
/// tree (with a relocated mount's relocation layer above it), or only an empty directory
/// (FrontOverlay), over the FUSE mount (the last lower). Recognized in mountinfo by its
/// source, `envmount:ENV`.
public struct EnvOverlay: Sendable {
    public var env: String
    public var lowers: [String]
    public var upper: String?

    public var fuseLower: String { lowers.last ?? "" }
    /// Only the empty directory over the FUSE mount (FrontOverlay): a plain mount.
    public var isFront: Bool { upper == nil && FrontOverlay.isFront(lowers) }
    /// The materialized tree: the lower right above the FUSE mount.
    public var nativeTree: String? { lowers.count > 1 && !isFront ? lowers[lowers.count - 2] : nil }
    /// A relocated mount's relocation layer, above the tree.
    public var relocationLayer: String? { lowers.count > 2 ? lowers[0] : nil }
    public var layer: WritableLayer? {
        guard let u = upper, u.hasSuffix("/upper") else { return nil }
        return try? WritableLayer(dir: String(u.dropLast("/upper".count)))
    }

    public static func of(_ entry: Mountpoints.Entry) -> EnvOverlay? {
        guard entry.fsType == "overlay", entry.source.hasPrefix(WritableLayer.overlaySourcePrefix) else { return nil }
        var o = EnvOverlay(env: String(entry.source.dropFirst(WritableLayer.overlaySourcePrefix.count)), lowers: [], upper: nil)
        for opt in entry.superOptions.split(separator: ",") {
            if opt.hasPrefix("lowerdir=") { o.lowers = opt.dropFirst("lowerdir=".count).split(separator: ":").map(String.init) }
            if opt.hasPrefix("upperdir=") { o.upper = String(opt.dropFirst("upperdir=".count)) }
        }
        return o.lowers.isEmpty ? nil : o
    }

    /// Where the FUSE mount goes when an overlay without a writable layer sits on `mountpoint`.
    static func hiddenLower(for mountpoint: String) -> String {
        "\(ControlPaths.directory())/\(ChunkID.of(Array(mountpoint.utf8)).hex.prefix(16)).lower"
    }

    /// Mounts the overlay at `mountpoint`: `lowers` (topmost first), and `layer` as upper and
    /// work directories when given (else the overlay is read-only).
    public static func mount(env: String, at mountpoint: String, lowers: [String], layer: WritableLayer?) throws {
        var opts = "lowerdir=\(lowers.joined(separator: ":"))"
        if let layer { opts += ",upperdir=\(layer.upper),workdir=\(layer.work)" }
        opts += ",redirect_dir=off,index=off,metacopy=off"
        do {
            try FS.mount(source: WritableLayer.overlaySourcePrefix + env, target: mountpoint, type: "overlay", options: opts)
        } catch {
            throw MountError("cannot mount the overlay on \(mountpoint) (\(opts)): \(error) (the kernel log, dmesg, says why)")
        }
    }

    /// Unmounts the overlay at `mountpoint` if it is envmount's (and, given `id`, that very
    /// mount, not one a later mount put at the same path); detaches it when files are open.
    public static func unmount(at mountpoint: String, id: Int? = nil) {
        guard let e = Mountpoints.find(mountpoint), EnvOverlay.of(e) != nil, id == nil || e.id == id else { return }
        do { try FS.unmount(mountpoint) } catch { try? FS.lazyUnmount(mountpoint) }
    }
}

/// Set once when the writable layer could not be mounted: the daemon then exits non-zero.
final class LayerFailure: Sendable {
    private let flag = Atomic<Bool>(false)
    func set() { flag.store(true, ordering: .relaxed) }
    var isSet: Bool { flag.load(ordering: .relaxed) }
}
