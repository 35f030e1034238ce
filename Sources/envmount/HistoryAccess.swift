import EnvDaemon
import EnvFormat
import EnvPublish
import EnvStore
import SysKit

/// Reading revision records for `freeze` and `diff`: from the listing where the store has one,
/// else (http stores) by number from the current ref downwards.
struct HistoryAccess {
    let store: any ObjectStore
    let env: String

    /// A store as given, with a relative directory made absolute.
    static func storeSpec(_ s: String) -> String { s.contains("://") ? s : Mountpoints.absolute(s) }

    func currentRef() throws -> Ref {
        do { return try Ref.decode(try store.get(Ref.objectKey(env: env))) } catch let e as StoreError where e.isNotFound {
            let others = (try? store.listEnvironments()) ?? []
            throw MountError("no environment '\(env)' in \(store.description)"
                + (others.isEmpty ? "" : " (it holds: \(others.joined(separator: ", ")))"))
        }
    }

    func record(_ n: UInt64) throws -> RevisionRecord {
        do { return try RevisionLog(store: store, env: env).record(n) } catch let e as PublishError {
            throw MountError(e.description)
        }
    }

    /// Recorded revision numbers, ascending.
    func numbers() throws -> [UInt64] {
        if let ns = try? RevisionLog(store: store, env: env).numbers() { return ns }
        // No listing (http): walk down from the current revision.
        let top = try currentRef().revision
        var out: [UInt64] = []
        var n = top
        while n >= 1 && out.count < 2 {
            if (try? store.exists(RevisionRecord.objectKey(env: env, revision: n))) == true { out.insert(n, at: 0) }
            n -= 1
        }
        return out
    }
}

extension String {
    func padded(_ n: Int) -> String { count >= n ? self : self + String(repeating: " ", count: n - count) }
    func leftPadded(_ n: Int) -> String { count >= n ? self : String(repeating: " ", count: n - count) + self }
}
