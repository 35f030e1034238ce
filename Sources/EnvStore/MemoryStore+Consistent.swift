import Glibc

extension MemoryStore: ConsistentStore {
    public func createExclusive(_ key: String, _ bytes: [UInt8]) throws -> Bool {
        if try exists(key) { return false }
        return try state.withLock { s in
            if s.objects[key] != nil { return false }
            try Self.injectedFailure(&s, key, description)
            s.objects[key] = bytes
            s.modified[key] = Int64(time(nil))
            s.versions[key, default: 0] += 1
            return true
        }
    }

    public func getVersioned(_ key: String) throws -> VersionedObject? {
        try state.withLock { s in
            if s.unavailable { throw StoreError.unavailable(key: key, store: description, detail: "store offline") }
            guard let b = s.objects[key] else { return nil }
            return VersionedObject(bytes: b, version: "\(s.versions[key] ?? 0)")
        }
    }

    public func putIfVersion(_ key: String, _ bytes: [UInt8], expected: String?) throws -> Bool {
        try state.withLock { s in
            try Self.injectedFailure(&s, key, description)
            let current = s.objects[key] == nil ? nil : "\(s.versions[key] ?? 0)"
            guard current == expected else { return false }
            s.objects[key] = bytes
            s.modified[key] = Int64(time(nil))
            s.versions[key, default: 0] += 1
            return true
        }
    }

    public func listDetailed(prefix: String) throws -> [ObjectInfo] {
        try state.withLock { s in
            if s.unavailable { throw StoreError.unavailable(key: prefix, store: description, detail: "store offline") }
            return s.objects.filter { $0.key.hasPrefix(prefix) }
                .map { ObjectInfo(key: $0.key, size: UInt64($0.value.count), modified: s.modified[$0.key] ?? 0) }
        }
    }

    @discardableResult
    public func delete(_ keys: [String]) throws -> Int {
        state.withLock { s in for k in keys { s.objects[k] = nil; s.modified[k] = nil } }
        return 1
    }

    /// Offline, or one of the failures `failPuts` asked for (conditional writes are puts too).
    static func injectedFailure(_ s: inout State, _ key: String, _ description: String) throws {
        if s.unavailable { throw StoreError.unavailable(key: key, store: description, detail: "store offline") }
        if s.failNextPuts > 0 {
            s.failNextPuts -= 1
            throw StoreError.failed(key: key, store: description, detail: "injected put failure")
        }
    }

    /// Moves an object's modification time into the past (for grace-period tests).
    public func age(_ key: String, seconds: Int64) {
        state.withLock { s in if let m = s.modified[key] { s.modified[key] = m - seconds } }
    }
}
