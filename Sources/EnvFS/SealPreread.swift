// A materialized tree's seal, read and parsed on a thread of its own as soon as the tree's id is
// known (from the ref), while the mount decodes the manifest on another core. A native mount of
// torch's tree read its 3.9 MB seal for ~5 ms after the manifest's ~10 ms decode, with the
// second core idle for both.
import Dispatch
import EnvFormat
import Synchronization
import SysKit

public final class SealPreread: Sendable {
    let root: String
    private let state = Mutex<State>(State())
    private let done = DispatchSemaphore(value: 0)

    struct State {
        var id: ChunkID?
        var seal: MaterializedTree.ParsedSeal?
        var taken = false
        /// Asked for another tree: the seal read is not kept.
        var abandoned = false
    }

    public init(cacheDirectory: String) { root = cacheDirectory + "/v1" }

    /// Starts reading the seal of tree `id` (once; a second call is ignored).
    public func start(id: ChunkID) {
        let first = state.withLock { s -> Bool in
            guard s.id == nil else { return false }
            s.id = id
            return true
        }
        guard first else { return }
        let path = "\(root)/trees/\(id.hex).seal"
        DetachedThread.start(name: "em-seal") { [self] in
            let seal = (try? FS.readFile(path)).flatMap { MaterializedTree.parseSeal($0, id: id) }
            state.withLock { if !$0.abandoned { $0.seal = seal } }
            done.signal()
        }
    }

    /// Waits until the read that `start` began is over (for tests).
    func waitUntilRead() {
        done.wait()
        done.signal()
    }

    /// The seal read for tree `id`, once: nil when none was started for it, it was taken
    /// already, or there was no readable seal (the caller then reads the file itself). Waits
    /// for the read when it is still under way.
    func take(id: ChunkID) -> MaterializedTree.ParsedSeal? {
        let mine = state.withLock { s -> Bool in
            if s.id != nil && s.id != id {
                // A mount that serves another revision (a writable layer's pinned one).
                s.abandoned = true
                s.seal = nil
            }
            guard s.id == id, !s.taken else { return false }
            s.taken = true
            return true
        }
        guard mine else { return nil }
        done.wait()
        return state.withLock { s in
            defer { s.seal = nil }
            return s.seal
        }
    }
}
