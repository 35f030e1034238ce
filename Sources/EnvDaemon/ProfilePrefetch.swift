import Dispatch
import EnvFetch
import Synchronization
import SysKit

/// The start-up prefetch of a profile. The profile object is fetched and its chunks queued on
/// a thread of its own as soon as the fetch pool exists, while the FUSE mount is being made:
/// the first chunks are on their way by the time the mount answers, where they used to wait
/// for READY and then one more round trip for the profile. What happened is logged once the
/// mount is READY (`logWhenKnown`), when the daemon's log is in place.
final class ProfilePrefetch: Sendable {
    private let outcome = Mutex<(line: String, isError: Bool)?>(nil)
    private let queued = Mutex<(job: FetchJob, chunks: [UInt32])?>(nil)
    private let known = DispatchGroup()

    /// Starts fetching profile `name`. `explicit`: the user named it (`--prefetch`), so its
    /// absence is an error; the implicit `default` may be absent.
    init(name: String, explicit: Bool, service: MountService) {
        known.enter()
        DetachedThread.start(name: "em-profile") { [self] in
            let result: (String, Bool)
            do {
                let (job, chunks) = try service.queueProfile(name)
                queued.withLock { $0 = (job, chunks) }
                result = ("prefetching profile \(name): \(job.totalChunks) chunks, \(formatBytes(job.totalBytes))", false)
            } catch let e as ProfileNotFound where !explicit {
                result = ("no profile default for this revision: nothing prefetched (\(e))", false)
            } catch {
                result = ("cannot prefetch profile \(name): \(error)", true)
            }
            outcome.withLock { $0 = result }
            known.leave()
        }
    }

    /// Calls `body` with the job and its chunks once the profile is queued (not if it was absent
    /// or broken), without blocking the caller.
    func whenQueued(_ body: @escaping @Sendable (FetchJob, [UInt32]) -> Void) {
        known.notify(queue: .global()) { [self] in
            if let q = queued.withLock({ $0 }) { body(q.job, q.chunks) }
        }
    }

    /// Logs the outcome as soon as it is known, without blocking the caller.
    func logWhenKnown() {
        known.notify(queue: .global()) { [self] in
            guard let o = outcome.withLock({ $0 }) else { return }
            if o.isError { Log.error(o.line) } else { Log.info(o.line) }
        }
    }
}
