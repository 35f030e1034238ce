// Every mount notes which chunks its readers touched, in first-touch order: the raw material
// of a profile.
import Synchronization

public final class AccessRecorder: Sendable {
    struct State {
        var seen: [UInt64]
        var order: [UInt32] = []
    }

    private let state: Mutex<State>

    public init(chunkCount: Int) {
        state = Mutex(State(seen: [UInt64](repeating: 0, count: (chunkCount + 63) / 64)))
    }

    public func record(_ chunk: UInt32) {
        let word = Int(chunk / 64), bit = UInt64(1) << UInt64(chunk % 64)
        state.withLock { s in
            if s.seen[word] & bit == 0 {
                s.seen[word] |= bit
                s.order.append(chunk)
            }
        }
    }

    /// Chunks in the order they were first read.
    public var chunks: [UInt32] { state.withLock { $0.order } }
}
