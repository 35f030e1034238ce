import EnvFetch
import EnvFS
import EnvFormat
import FuseKit
import Glibc

/// Presents an EnvFilesystem to FuseKit: attribute and error translation only.
final class FuseBridge: FuseFilesystem {
    let fs: EnvFilesystem

    init(_ fs: EnvFilesystem) { self.fs = fs }

    static func attr(_ a: EnvFilesystem.Attributes) -> FuseAttr {
        let type: UInt32
        switch a.kind {
        case .directory: type = S_IFDIR
        case .regular: type = S_IFREG
        case .symlink: type = S_IFLNK
        }
        return FuseAttr(ino: a.ino, mode: type | (a.kind == .symlink ? 0o777 : a.mode), nlink: a.nlink,
                        uid: a.uid, gid: a.gid, size: a.size, mtimeNs: a.mtimeNs)
    }

    func lookup(parent: UInt64, name: [UInt8]) throws -> FuseAttr {
        do { return Self.attr(try fs.lookup(parent: parent, name: name)) } catch { throw FuseError(error.errno) }
    }

    func getattr(ino: UInt64) throws -> FuseAttr {
        do { return Self.attr(try fs.getattr(ino)) } catch { throw FuseError(error.errno) }
    }

    func readlink(ino: UInt64) throws -> [UInt8] {
        do { return try fs.readlink(ino) } catch { throw FuseError(error.errno) }
    }

    func open(ino: UInt64, flags: Int32) throws {
        do { try fs.open(ino, writable: flags & O_ACCMODE != O_RDONLY || flags & O_TRUNC != 0) } catch {
            throw FuseError(error.errno)
        }
    }

    func read(ino: UInt64, offset: UInt64, size: Int) throws -> FuseReadReply {
        do {
            switch try fs.read(ino, offset: offset, size: size) {
            case let .bytes(b): return .bytes(b)
            case let .file(fd, off, len): return .file(fd: fd.rawValue, offset: off, length: len)
            }
        } catch {
            throw FuseError(error.errno)
        }
    }

    func opendir(ino: UInt64) throws {
        do {
            let a = try fs.getattr(ino)
            if a.kind != .directory { throw FuseError(ENOTDIR) }
        } catch let e as FSError {
            throw FuseError(e.errno)
        }
    }

    func readdir(ino: UInt64, offset: Int, emit: (ArraySlice<UInt8>, UInt64, UInt32, Int) -> Bool) throws {
        do {
            try fs.readdir(ino, from: offset) { name, child, kind, next in
                let type: UInt32 = kind == .directory ? S_IFDIR : kind == .regular ? S_IFREG : S_IFLNK
                return emit(name, child, type, next)
            }
        } catch {
            throw FuseError(error.errno)
        }
    }

    func readdirplus(ino: UInt64, offset: Int, emit: (ArraySlice<UInt8>, UInt64, FuseAttr?, Int) -> Bool) throws {
        do {
            try fs.readdir(ino, from: offset) { name, child, _, next in
                if next <= 2 { return emit(name, child, nil, next) }
                guard let a = try? fs.getattr(child) else { return true }
                return emit(name, child, Self.attr(a), next)
            }
        } catch {
            throw FuseError(error.errno)
        }
    }

    func statfs() -> FuseStatfs {
        FuseStatfs(blocks: (fs.manifest.totalFileBytes + 4095) / 4096, files: UInt64(fs.manifest.entries.count))
    }
}
