import Synchronization

/// How many requests of each kind the kernel sent this session, and the bytes READ replies
/// carried: the evidence for how many round trips a workload costs (a cold import pays one per
/// LOOKUP, IOCTL, READ, ... that the kernel's caches do not absorb).
public final class FuseOpCounters: Sendable {
    /// The requests a read-only mount sees. Those the kernel stops sending after one ENOSYS
    /// (FLUSH, GETXATTR, LISTXATTR, ACCESS, OPEN and OPENDIR under zero-message open) count once.
    public enum Op: Int, CaseIterable, Sendable {
        case lookup, getattr, readlink, open, read, opendir, readdir, readdirplus, statfs
        case ioctl, flush, release, releasedir, forget, getxattr, listxattr, access

        /// The kernel's name for it (`FUSE_LOOKUP` without the prefix, lower case).
        public var name: String { String(describing: self) }
    }

    private let counts = Mutex([UInt64](repeating: 0, count: Op.allCases.count))
    private let bytesRead = Atomic<UInt64>(0)
    private let filesPushed = Atomic<UInt64>(0)
    private let bytesPushed = Atomic<UInt64>(0)

    public init() {}

    func count(_ op: Op, _ n: UInt64 = 1) { counts.withLock { $0[op.rawValue] &+= n } }
    func countReadBytes(_ n: Int) { bytesRead.add(UInt64(max(n, 0)), ordering: .relaxed) }
    func countPush(_ n: Int) {
        filesPushed.add(1, ordering: .relaxed)
        bytesPushed.add(UInt64(max(n, 0)), ordering: .relaxed)
    }

    /// Requests by operation name; operations never sent are left out.
    public var snapshot: [String: UInt64] {
        let c = counts.withLock { $0 }
        var out: [String: UInt64] = [:]
        for op in Op.allCases where c[op.rawValue] > 0 { out[op.name] = c[op.rawValue] }
        return out
    }

    public func count(of op: Op) -> UInt64 { counts.withLock { $0[op.rawValue] } }

    /// Bytes of file data the READ replies carried.
    public var readBytes: UInt64 { bytesRead.load(ordering: .relaxed) }

    /// Files whose bytes were put into the kernel's page cache ahead of any read (FuseNotifier),
    /// and those bytes: reads of them then need no READ request.
    public var pushedFiles: UInt64 { filesPushed.load(ordering: .relaxed) }
    public var pushedBytes: UInt64 { bytesPushed.load(ordering: .relaxed) }

    /// All requests counted.
    public var total: UInt64 { counts.withLock { $0.reduce(0, &+) } }
}
