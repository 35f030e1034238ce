// What revisions and garbage collection need from a store beyond get/put: an atomic create, a
// compare-and-swap, listings with sizes and times, and deletion.
//
//   directory  create: write a temporary, link(2) it to the key (fails if the key exists);
//              swap: under an exclusive flock(2) on `.locks/<key>`, compare the object's
//              version (inode and mtime), then rename(2)
//   S3         create: PUT with `If-None-Match: *`; swap: PUT with `If-Match: <ETag>` (412 when
//              another writer got there first); listings: ListObjectsV2 Size and LastModified;
//              deletes: DeleteObjects, 1,000 keys a request
//   memory     under its lock
//
// A store without these (none of the writable ones today) is handled by `CASFallback`:
// exists-then-put, which is racy, and said so.

/// An object's key, size and last modification time.
public struct ObjectInfo: Sendable, Equatable {
    public var key: String
    public var size: UInt64
    /// Unix seconds.
    public var modified: Int64

    public init(key: String, size: UInt64, modified: Int64) {
        self.key = key; self.size = size; self.modified = modified
    }
}

/// An object's bytes and an opaque version for a later compare-and-swap (S3: the ETag).
public struct VersionedObject: Sendable {
    public var bytes: [UInt8]
    public var version: String

    public init(bytes: [UInt8], version: String) { self.bytes = bytes; self.version = version }
}

public protocol ConsistentStore: ObjectStore {
    /// Writes the object only if nothing exists under `key`. False when something does (then
    /// nothing was written).
    func createExclusive(_ key: String, _ bytes: [UInt8]) throws -> Bool
    /// The object and its version; nil when there is none.
    func getVersioned(_ key: String) throws -> VersionedObject?
    /// Replaces the object only if its version is still `expected` (nil: only if there is none).
    /// False when another writer changed it first.
    func putIfVersion(_ key: String, _ bytes: [UInt8], expected: String?) throws -> Bool
    /// Every object under `prefix` with size and modification time.
    func listDetailed(prefix: String) throws -> [ObjectInfo]
    /// Deletes the objects; a key that does not exist is not an error. Returns how many requests
    /// it took.
    @discardableResult
    func delete(_ keys: [String]) throws -> Int
}

/// Atomic create and compare-and-swap on any store: through `ConsistentStore` when the store is
/// one, otherwise exists-then-put (a race window between the check and the write: two
/// publishers at the same moment may both succeed, and the later write wins).
public enum CASFallback {
    public static func createExclusive(_ store: any ObjectStore, _ key: String, _ bytes: [UInt8]) throws -> Bool {
        if let c = store as? any ConsistentStore { return try c.createExclusive(key, bytes) }
        if try store.exists(key) { return false }
        try store.put(key, bytes)
        return true
    }
}
