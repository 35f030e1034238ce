import Glibc
import SysKit

/// A store in a local directory (`file:///path` or a plain path). Writes go to a temporary file
/// in the same directory, are fsynced, then renamed into place.
public final class DirectoryStore: ObjectStore {
    public let root: String
    public let description: String
    public var traits: StoreTraits { StoreTraits(latency: .local, listable: true, writable: true) }
    public var isKnownAbsent: Bool { (try? FS.stat(root))?.kind != .directory }

    public init(root: String, description: String? = nil) {
        self.root = root.hasSuffix("/") && root.count > 1 ? String(root.dropLast()) : root
        self.description = description ?? root
    }

    func path(_ key: String) -> String { root + "/" + key }

    /// Creates the store directory for a first publish.
    public func createIfMissing() throws {
        do { try FS.makeDirectories(root) } catch { throw mapError(error, "") }
    }

    private func mapError(_ e: Error, _ key: String) -> StoreError {
        if let se = e as? SystemError {
            switch se.errno {
            case ENOENT, ENOTDIR:
                // A missing object in a present store is "not found"; a store directory that is
                // gone (an unmounted disk or share) is an unreachable store.
                if isKnownAbsent {
                    return .unavailable(key: key, store: description, detail: "store directory \(root) is missing")
                }
                return .notFound(key: key, store: description)
            case EACCES, EPERM: return .denied(key: key, store: description, detail: se.description)
            case EIO, ENOTCONN, ESTALE: return .unavailable(key: key, store: description, detail: se.description)
            default: return .failed(key: key, store: description, detail: se.description)
            }
        }
        return .failed(key: key, store: description, detail: "\(e)")
    }

    public func get(_ key: String) throws -> [UInt8] {
        do { return try FS.readFile(path(key)) } catch { throw mapError(error, key) }
    }

    public func put(_ key: String, _ bytes: [UInt8]) throws {
        let p = path(key)
        do {
            if let slash = p.lastIndex(of: "/") { try FS.makeDirectories(String(p[..<slash])) }
            // Chunks are synced in one syncfs before the manifest is written (see sync());
            // manifests, refs and profiles are small and synced one by one.
            try FS.writeFileAtomically(p, bytes, mode: 0o644, sync: !key.hasPrefix("chunks/"))
        } catch {
            throw mapError(error, key)
        }
    }

    public func sync() throws {
        do { try FS.syncFileSystem(root) } catch { throw mapError(error, "") }
    }

    public func exists(_ key: String) throws -> Bool {
        do {
            _ = try FS.stat(path(key))
            return true
        } catch let e as SystemError where e.errno == ENOENT || e.errno == ENOTDIR {
            return false
        } catch {
            throw mapError(error, key)
        }
    }

    public func list(prefix: String) throws -> [String] {
        var out: [String] = []
        func walk(_ rel: String) throws {
            let names: [String]
            do { names = try FS.listDirectory(path(rel)) } catch let e as SystemError where e.errno == ENOENT {
                return
            }
            for n in names where !n.contains(".tmp.") {
                let k = rel.isEmpty ? n : rel + "/" + n
                if (try? FS.lstat(path(k)))?.kind == .directory { try walk(k) } else { out.append(k) }
            }
        }
        do {
            try walk(prefix.hasSuffix("/") ? String(prefix.dropLast()) : prefix)
        } catch {
            throw mapError(error, prefix)
        }
        return out
    }
}
