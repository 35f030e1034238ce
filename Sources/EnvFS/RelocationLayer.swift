// The files a relocated mount presents differently, kept beside a materialized tree so that a
// mount at another path than the source path is served natively too.
//
// A materialized tree holds the bytes as published. A mount at path M presents a few files
// differently (scripts in bin/, pyvenv.cfg, .pth and RECORD files, binaries with patched
// strings, symlinks that name the source path: RelocatedFiles). This layer holds exactly those,
// as the mount at M presents them, plus their parent directories with the tree's modes, owners
// and mtimes; the overlay puts it above the tree: lowers = [layer, tree, FUSE]. Its directories
// are not opaque, so every other name falls through to the tree.
//
// Layout under CACHE/v1/trees:
//   <manifest hex>.reloc/<sha256(M) hex>/       the layer for mount path M
//   <manifest hex>.reloc/<sha256(M) hex>.seal   its seal: M, then per file its entry, ctime and
//                                               digest, per directory its entry and ctime
//
// Guarantees, as for the tree: bytes come from verified chunks through the same read path the
// FUSE mount serves (EnvFilesystem with the same RelocatedFiles), so both give identical bytes;
// the layer is built aside and renamed into place; `check` runs before a mount uses it: a file
// whose ctime moved is re-hashed, a directory whose ctime moved is listed (a name added to the
// layer would hide the tree's file), a symlink's target is compared; any mismatch drops the
// layer, which is rebuilt. It is removed with its tree.
import EnvFetch
import EnvFormat
import Glibc
import SysKit

public struct RelocationLayer: Sendable {
    public let tree: MaterializedTree
    public let mountpoint: [UInt8]

    public init(tree: MaterializedTree, mountpoint: [UInt8]) {
        self.tree = tree
        self.mountpoint = mountpoint
    }

    /// Where every relocation layer of the tree lives.
    static func directory(of tree: MaterializedTree) -> String { tree.path + ".reloc" }
    public var path: String { "\(Self.directory(of: tree))/\(ChunkID.of(mountpoint).hex)" }
    var sealPath: String { path + ".seal" }

    /// What the layer holds for `relocated`: regular files (every name of a relocated inode),
    /// symlinks with a rewritten target, and the directories above them.
    struct Contents {
        var files: [Int] = []        // inode owners with a plan
        var names: [Int] = []        // every regular entry whose owner is in `files`
        var symlinks: [Int: [UInt8]] = [:]
        var directories: [Int] = []  // sorted, root first
    }

    func contents(_ relocated: RelocatedFiles) -> Contents {
        let m = tree.manifest
        var c = Contents()
        var dirs = Set<Int>()
        func addParents(_ i: Int) {
            var p = Int(m.entries[i].parent)
            while dirs.insert(p).inserted, p != 0 { p = Int(m.entries[p].parent) }
        }
        dirs.insert(0)
        for (i, e) in m.entries.enumerated() {
            switch e.kind {
            case .regular where relocated.has(Int(e.owner)):
                if e.owner == UInt32(i) { c.files.append(i) }
                c.names.append(i)
                addParents(i)
            case .symlink:
                if let t = relocated.symlinkTarget(i) {
                    c.symlinks[i] = t
                    addParents(i)
                }
            default:
                break
            }
        }
        c.directories = dirs.sorted()
        return c
    }

    // MARK: building

    /// Builds the layer aside from what `fs` presents (it must carry the RelocatedFiles of this
    /// mount path), then renames it into place. Returns the number of files written.
    @discardableResult
    public func build(_ fs: EnvFilesystem) throws -> Int {
        guard let relocated = fs.relocated else { return 0 }
        let m = tree.manifest
        let c = contents(relocated)
        let root = tree.root
        for d in ["tmp", "trees"] { try FS.makeDirectories("\(root)/\(d)", mode: 0o700) }
        try FS.makeDirectories(Self.directory(of: tree), mode: 0o700)
        let tmp = "\(root)/tmp/\(getpid()).tree.\(UInt32.random(in: 0...UInt32.max))"
        do {
            var paths: [Int: PathBytes] = [0: tmp.pathBytes]
            func pathOf(_ i: Int) -> PathBytes {
                if let p = paths[i] { return p }
                let p = pathOf(Int(m.entries[i].parent)) + [UInt8(ascii: "/")] + Array(m.name(i))
                paths[i] = p
                return p
            }
            for d in c.directories { try FS.mkdir(pathOf(d), mode: 0o700) }
            var seal: [String] = []
            for i in c.files {
                let bytes = try Self.presented(fs, entry: i)
                let dest = pathOf(i)
                let e = m.entries[i]
                let fd = try FileDescriptor.open(dest, O_WRONLY | O_CREAT | O_EXCL, mode: 0o600)
                do {
                    try fd.pwriteAll(bytes, at: 0)
                    fd.close()
                } catch {
                    fd.close()
                    throw error
                }
                try MaterializedTree.setAttributes(of: e, on: dest)
                seal.append("f \(i) CTIME \(MaterializedTree.digest(of: bytes))")
            }
            for i in c.names where m.entries[i].owner != UInt32(i) { try FS.link(pathOf(Int(m.entries[i].owner)), pathOf(i)) }
            for (i, target) in c.symlinks.sorted(by: { $0.key < $1.key }) {
                let e = m.entries[i]
                try FS.symlink(target: target, at: pathOf(i))
                try FS.lchown(pathOf(i), uid: e.uid, gid: e.gid)
                try FS.setMtime(pathOf(i), ns: e.mtimeNs)
            }
            for d in c.directories.reversed() {
                let e = m.entries[d]
                try FS.lchown(pathOf(d), uid: e.uid, gid: e.gid)
                try FS.chmod(pathOf(d), e.mode)
                try FS.setMtime(pathOf(d), ns: e.mtimeNs)
            }
            try? FS.removeTree(path)
            try FS.rename(tmp, path)
            // Sealed in place, last: the rename moved the root's ctime, the links their files'.
            // A layer without its seal is rebuilt.
            let final = path.pathBytes
            func finalPath(_ i: Int) -> PathBytes { i == 0 ? final : final + [UInt8(ascii: "/")] + m.path(i) }
            var lines = ["envmount-reloc 1 \(tree.id.hex) \(Hex.encode(mountpoint))"]
            for s in seal {
                let i = Int(s.split(separator: " ")[1])!
                lines.append(s.replacing("CTIME", with: String(try FS.lstat(finalPath(i)).ctimeNs)))
            }
            for d in c.directories { lines.append("d \(d) \(try FS.lstat(finalPath(d)).ctimeNs)") }
            try FS.writeFileAtomically(sealPath, Array((lines.joined(separator: "\n") + "\n").utf8), mode: 0o600)
            return c.files.count
        } catch {
            try? FS.removeTree(tmp)
            try? FS.unlink(sealPath)
            throw error
        }
    }

    /// The whole file `entry` as `fs` presents it.
    static func presented(_ fs: EnvFilesystem, entry i: Int) throws -> [UInt8] {
        let ino = UInt64(i + 1)
        let size = Int(try fs.getattr(ino).size)
        var out: [UInt8] = []
        out.reserveCapacity(size)
        while out.count < size {
            let piece: [UInt8]
            switch try fs.read(ino, offset: UInt64(out.count), size: min(size - out.count, 4 << 20)) {
            case let .bytes(b): piece = b
            case let .file(fd, offset, length):
                defer { fd.close() }
                piece = try fd.read(count: length, offset: offset)
            }
            if piece.isEmpty { throw FSError.io("\(fs.path(ino)) ended at \(out.count) of \(size) bytes") }
            out += piece
        }
        return out
    }

    // MARK: checking

    /// Whether a mount can use the layer: it exists, it holds what `relocated` presents (same
    /// files, symlink targets, directories), and nothing in it changed since it was written.
    public func check(_ relocated: RelocatedFiles) -> MaterializedTree.State {
        guard FS.exists(path), let bytes = try? FS.readFile(sealPath) else { return .absent }
        let m = tree.manifest
        let lines = String(decoding: bytes, as: UTF8.self).split(separator: "\n")
        guard lines.first == "envmount-reloc 1 \(tree.id.hex) \(Hex.encode(mountpoint))" else { return .damaged("\(sealPath) is not its seal") }
        let c = contents(relocated)
        var files: [Int: (ctime: Int64, digest: String)] = [:]
        var dirs: [Int: Int64] = [:]
        for l in lines.dropFirst() {
            let p = l.split(separator: " ")
            guard p.count >= 3, let i = Int(p[1]), i >= 0, i < m.entries.count, let ctime = Int64(p[2]) else {
                return .damaged("\(sealPath) has a bad line")
            }
            if p[0] == "f", p.count == 4 { files[i] = (ctime, String(p[3])) } else if p[0] == "d" { dirs[i] = ctime } else {
                return .damaged("\(sealPath) has a bad line")
            }
        }
        guard Set(files.keys) == Set(c.files), Set(dirs.keys) == Set(c.directories) else {
            return .damaged("\(path) does not hold the files this mount relocates")
        }
        let base = path.pathBytes
        func at(_ i: Int) -> PathBytes { i == 0 ? base : base + [UInt8(ascii: "/")] + m.path(i) }
        // Every name of the layer stat'ed by directory (TreeWalk): no path per file, and a
        // directory replaced by a symlink is refused instead of followed.
        let stats: [Int: NameStat]
        switch statAll(c) {
        case let .success(s): stats = s
        case let .failure(notDirectory): return .damaged("\(notDirectory) is not the directory it was written as")
        }
        var resealed = false
        for i in c.files {
            let p = at(i)
            guard let st = stats[i], st.errno == 0, st.kind == .regular, st.mtimeNs == m.entries[i].mtimeNs,
                  st.size == relocated.size(i, published: m.entries[i].size) else {
                return .damaged("\(p.pathString) is missing or has the wrong size or mtime")
            }
            if st.ctimeNs != files[i]!.ctime {
                guard (try? MaterializedTree.digest(ofFile: p)) == files[i]!.digest else {
                    return .damaged("\(p.pathString) does not hold the bytes it was written with")
                }
                files[i]!.ctime = st.ctimeNs
                resealed = true
            }
        }
        for i in c.names where m.entries[i].owner != UInt32(i) {
            guard let a = stats[i], a.errno == 0, let b = stats[Int(m.entries[i].owner)], b.errno == 0, a.inode == b.inode else {
                return .damaged("\(at(i).pathString) is not the hardlink it was written as")
            }
        }
        for (i, target) in c.symlinks {
            guard (try? FS.readlink(at(i))) == target else { return .damaged("\(at(i).pathString) does not point where it should") }
        }
        for d in c.directories {
            guard let st = stats[d], st.errno == 0, st.kind == .directory, st.mode == m.entries[d].mode,
                  st.mtimeNs == m.entries[d].mtimeNs else {
                return .damaged("\(at(d).pathString) is missing or has the wrong mode or mtime")
            }
            if st.ctimeNs != dirs[d]! {
                // A name added here would hide the tree's file of that name.
                var want = Set<[UInt8]>()
                for k in c.names where Int(m.entries[k].parent) == d { want.insert(Array(m.name(k))) }
                for k in c.symlinks.keys where Int(m.entries[k].parent) == d { want.insert(Array(m.name(k))) }
                for k in c.directories where k != 0 && Int(m.entries[k].parent) == d { want.insert(Array(m.name(k))) }
                guard let have = try? FS.listDirectory(at(d)), Set(have) == want else {
                    return .damaged("\(at(d).pathString) holds names it was not written with")
                }
                dirs[d] = st.ctimeNs
                resealed = true
            }
        }
        if resealed {
            var out = [String(lines[0])]
            for i in c.files { out.append("f \(i) \(files[i]!.ctime) \(files[i]!.digest)") }
            for d in c.directories { out.append("d \(d) \(dirs[d]!)") }
            try? FS.writeFileAtomically(sealPath, Array((out.joined(separator: "\n") + "\n").utf8), mode: 0o600)
        }
        return .ready
    }

    /// The stats of every name in the layer (its files, symlinks and directories, the root
    /// included), directory by directory below the layer's root; a directory that cannot be
    /// opened leaves its names out (they are then reported missing). Fails with the path of a
    /// directory that is a symlink or not a directory any more.
    private func statAll(_ c: Contents) -> Result<[Int: NameStat], PathError> {
        let m = tree.manifest
        var out: [Int: NameStat] = [:]
        let root: FileDescriptor
        do {
            root = try FileDescriptor.openDirectory(path.pathBytes)
            out[0] = NameStat(try FS.lstat(path))
        } catch {
            if (error as? SystemError)?.errno == ENOENT { return .success(out) }
            return .failure(PathError(path))
        }
        defer { root.close() }
        let names = c.names + c.symlinks.keys + c.directories.filter { $0 != 0 }
        for g in TreeWalk.groups(entries: names, manifest: m) {
            switch TreeWalk.stat(g, manifest: m, root: root) {
            case let .failure(e):
                if e.errno != ENOENT { return .failure(PathError(TreeWalk.firstNonDirectory(above: g.directory, manifest: m, root: path))) }
            case let .success(stats):
                for (j, i) in g.entries.enumerated() { out[i] = stats[j] }
            }
        }
        return .success(out)
    }

    /// Removes this layer and its seal.
    public func remove() {
        try? FS.unlink(sealPath)
        try? FS.removeTree(path)
    }

    /// Removes every relocation layer of `tree`.
    static func removeAll(of tree: MaterializedTree) {
        try? FS.removeTree(directory(of: tree))
    }
}

/// A path, as an Error, for `Result`.
struct PathError: Error, CustomStringConvertible {
    var description: String
    init(_ path: String) { description = path }
}
