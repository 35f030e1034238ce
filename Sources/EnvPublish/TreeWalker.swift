import SysKit
import EnvFormat

/// Walks a source tree without following symlinks, children in byte order, and records every
/// entry in a ManifestBuilder. Regular files are listed in path order: the chunker's stream.
struct TreeWalker {
    struct FileToRead {
        var node: Int
        var path: PathBytes
        var stat: FileStat
    }

    var builder = ManifestBuilder()
    var files: [FileToRead] = []
    var counts = (directories: 0, files: 0, symlinks: 0, hardlinks: 0, skipped: 0)
    /// Regular files left out by the exclude rules, and their bytes.
    var excluded = (files: 0, bytes: UInt64(0))
    let skipSpecial: Bool
    let excludes: ExcludeRules
    let warn: (String) -> Void
    private var inodes: [HardlinkKey: Int] = [:]
    /// Paths left out of the walk (with their contents).
    var bundleExcluded: Set<PathBytes> = []

    struct HardlinkKey: Hashable {
        var device: UInt64
        var inode: UInt64
    }

    init(skipSpecial: Bool, excludes: ExcludeRules = ExcludeRules(), warn: @escaping (String) -> Void) {
        self.skipSpecial = skipSpecial
        self.excludes = excludes
        self.warn = warn
    }

    mutating func walk(root: PathBytes) throws {
        let st: FileStat
        do { st = try FS.stat(root) } catch { throw PublishError.unreadable(path: root.pathString, reason: "\(error)") }
        guard st.kind == .directory else { throw PublishError.notADirectory(root.pathString) }
        let r = builder.add(node(parent: 0, name: [], st, kind: .directory))
        try walkDirectory(root, relative: [], index: r)
    }

    /// --with-python: the base interpreter's installation as `.envmount-python/`, less its exclusions.
    mutating func walkBundle(_ b: BundledPython) throws {
        guard builder.nodes.allSatisfy({ $0.parent != 0 || $0.name != BundledPython.directoryName.pathBytes }) else {
            throw PublishError.interpreter("the source has a top-level \(BundledPython.directoryName); that name is reserved for --with-python")
        }
        bundleExcluded = Set(b.excluded)
        try walkExtra(b.prefix.pathBytes, as: BundledPython.directoryName.pathBytes)
    }

    /// Adds the directory `path` as a top-level directory `name` of the tree, with its contents.
    mutating func walkExtra(_ path: PathBytes, as name: PathBytes) throws {
        let st: FileStat
        do { st = try FS.stat(path) } catch { throw PublishError.unreadable(path: path.pathString, reason: "\(error)") }
        guard st.kind == .directory else { throw PublishError.notADirectory(path.pathString) }
        let i = builder.add(node(parent: 0, name: name, st, kind: .directory))
        try walkDirectory(path, relative: name, index: i)
    }

    private func node(parent: Int, name: PathBytes, _ st: FileStat, kind: Manifest.Kind) -> ManifestBuilder.Node {
        ManifestBuilder.Node(parent: parent, name: name, kind: kind, mode: st.mode, uid: st.uid, gid: st.gid,
                             mtimeNs: st.mtimeNs, size: kind == .directory ? 0 : st.size)
    }

    private mutating func walkDirectory(_ path: PathBytes, relative: [UInt8], index: Int) throws {
        counts.directories += 1
        var names: [PathBytes]
        do { names = try FS.listDirectory(path) } catch {
            throw PublishError.unreadable(path: path.pathString, reason: "\(error)")
        }
        names.sort { compareBytes($0, $1) < 0 }
        for name in names {
            let child = path.appendingComponent(name)
            if bundleExcluded.contains(child) { continue }
            let st: FileStat
            do { st = try FS.lstat(child) } catch { throw PublishError.unreadable(path: child.pathString, reason: "\(error)") }
            let rel = relative.isEmpty ? name : relative + [UInt8(ascii: "/")] + name
            if !excludes.isEmpty && excludes.excludes(rel, isDirectory: st.kind == .directory) {
                countExcluded(child, st)
                continue
            }
            switch st.kind {
            case .directory:
                let i = builder.add(node(parent: index, name: name, st, kind: .directory))
                try walkDirectory(child, relative: rel, index: i)
            case .symlink:
                var n = node(parent: index, name: name, st, kind: .symlink)
                do { n.symlinkTarget = try FS.readlink(child) } catch {
                    throw PublishError.unreadable(path: child.pathString, reason: "\(error)")
                }
                n.size = UInt64(n.symlinkTarget.count)
                builder.add(n)
                counts.symlinks += 1
            case .regular:
                var n = node(parent: index, name: name, st, kind: .regular)
                let key = HardlinkKey(device: st.device, inode: st.inode)
                if st.links > 1, let owner = inodes[key] {
                    n.hardlinkOf = owner
                    builder.add(n)
                    counts.hardlinks += 1
                } else {
                    let i = builder.add(n)
                    if st.links > 1 { inodes[key] = i }
                    files.append(FileToRead(node: i, path: child, stat: st))
                    counts.files += 1
                }
            case .fifo, .socket, .charDevice, .blockDevice, .unknown:
                let kind: String
                switch st.kind {
                case .fifo: kind = "FIFO"
                case .socket: kind = "socket"
                case .charDevice: kind = "character device"
                case .blockDevice: kind = "block device"
                default: kind = "file of unknown type"
                }
                if !skipSpecial { throw PublishError.specialFile(path: child.pathString, kind: kind) }
                warn("warning: skipping \(child.pathString) (\(kind))")
                counts.skipped += 1
            }
        }
    }

    /// Counts what an exclude rule left out: a file, or everything below a directory.
    private mutating func countExcluded(_ path: PathBytes, _ st: FileStat) {
        switch st.kind {
        case .regular:
            excluded.files += 1
            excluded.bytes += st.size
        case .directory:
            for name in (try? FS.listDirectory(path)) ?? [] {
                let child = path.appendingComponent(name)
                if let cst = try? FS.lstat(child) { countExcluded(child, cst) }
            }
        default:
            break
        }
    }
}
