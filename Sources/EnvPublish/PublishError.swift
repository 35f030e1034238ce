/// Why a publish stopped. Every case names the path or object at fault; the ref is never
/// moved when one is thrown.
public enum PublishError: Error, CustomStringConvertible, Sendable {
    case notADirectory(String)
    case specialFile(path: String, kind: String)
    case unreadable(path: String, reason: String)
    case changedDuringPublish(String)
    case invalidEnvName(String)
    case store(String)
    case interpreter(String)
    case badExclude(pattern: String, reason: String)
    case layer(String)

    public var description: String {
        switch self {
        case let .notADirectory(p): return "\(p) is not a directory"
        case let .specialFile(p, k): return "\(p) is a \(k); environments hold only files, directories and symlinks (use --skip-special to leave such paths out)"
        case let .unreadable(p, r): return "cannot read \(p): \(r)"
        case let .changedDuringPublish(p): return "\(p) changed while it was being published; publish again once nothing writes to the tree"
        case let .invalidEnvName(n): return "invalid environment name '\(n)' (letters, digits, '-', '_' and '.', not starting with '.' or '-')"
        case let .store(m): return m
        case let .interpreter(m): return m
        case let .badExclude(p, r): return "exclude pattern '\(p)': \(r)"
        case let .layer(m): return m
        }
    }
}
