import Glibc
import SysKit

/// Atomic create by link(2), compare-and-swap under flock(2), listings with lstat sizes and
/// mtimes, deletion by unlink. Works across processes on one machine, and on network file
/// systems whose link(2) is atomic and which pass flock through (NFSv4 maps it to a lock).
extension DirectoryStore: ConsistentStore {
    public func createExclusive(_ key: String, _ bytes: [UInt8]) throws -> Bool {
        let p = path(key)
        let tmp = p + ".tmp.\(getpid()).\(UInt32.random(in: 0...UInt32.max))"
        do {
            if let slash = p.lastIndex(of: "/") { try FS.makeDirectories(String(p[..<slash])) }
            let fd = try FileDescriptor.open(tmp, O_WRONLY | O_CREAT | O_EXCL, mode: 0o644)
            do {
                try fd.writeAll(bytes)
                try fd.fsync()
            } catch {
                fd.close()
                throw error
            }
            fd.close()
        } catch {
            try? FS.unlink(tmp)
            throw StoreError.failed(key: key, store: description, detail: "\(error)")
        }
        defer { try? FS.unlink(tmp) }
        do {
            try FS.link(tmp.pathBytes, p.pathBytes)
            return true
        } catch let e as SystemError where e.errno == EEXIST {
            return false
        } catch {
            throw StoreError.failed(key: key, store: description, detail: "\(error)")
        }
    }

    static func version(_ st: FileStat) -> String { "\(st.inode)-\(st.mtimeNs)-\(st.size)" }

    public func getVersioned(_ key: String) throws -> VersionedObject? {
        // Read through one descriptor so bytes and version belong to the same file.
        let fd: FileDescriptor
        do { fd = try FileDescriptor.open(path(key), O_RDONLY) } catch let e as SystemError where e.errno == ENOENT {
            return nil
        } catch {
            throw StoreError.failed(key: key, store: description, detail: "\(error)")
        }
        defer { fd.close() }
        do {
            let bytes = try fd.readAll()
            let st = try FS.stat("/proc/self/fd/\(fd.rawValue)")
            return VersionedObject(bytes: bytes, version: Self.version(st))
        } catch {
            throw StoreError.failed(key: key, store: description, detail: "\(error)")
        }
    }

    public func putIfVersion(_ key: String, _ bytes: [UInt8], expected: String?) throws -> Bool {
        let lockPath = root + "/.locks/" + key.replacingSlashes()
        do {
            try FS.makeDirectories(root + "/.locks")
            let lock = try FileDescriptor.open(lockPath, O_RDWR | O_CREAT, mode: 0o644)
            defer { lock.close() }
            try lock.flockExclusive(path: lockPath)
            let current: String?
            do { current = Self.version(try FS.stat(path(key))) } catch let e as SystemError where e.errno == ENOENT {
                current = nil
            }
            guard current == expected else { return false }
            try put(key, bytes)
            return true
        } catch let e as StoreError {
            throw e
        } catch {
            throw StoreError.failed(key: key, store: description, detail: "\(error)")
        }
    }

    public func listDetailed(prefix: String) throws -> [ObjectInfo] {
        var out: [ObjectInfo] = []
        for k in try list(prefix: prefix) {
            guard let st = try? FS.lstat(path(k)), st.kind == .regular else { continue }
            out.append(ObjectInfo(key: k, size: st.size, modified: st.mtimeNs / 1_000_000_000))
        }
        return out
    }

    @discardableResult
    public func delete(_ keys: [String]) throws -> Int {
        for k in keys {
            do { try FS.unlink(path(k)) } catch let e as SystemError where e.errno == ENOENT {
                continue
            } catch {
                throw StoreError.failed(key: k, store: description, detail: "cannot delete: \(error)")
            }
        }
        return keys.count
    }
}

extension String {
    /// A key as one file name (`refs/x` → `refs%2Fx`).
    func replacingSlashes() -> String {
        var s = ""
        for c in self { if c == "/" { s += "%2F" } else if c == "%" { s += "%25" } else { s.append(c) } }
        return s
    }
}
