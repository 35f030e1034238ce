import EnvFormat
import EnvStore

/// What the store says now about a mounted environment, asked when `status` runs: whether it
/// answers at all (an offline mount wants to know when it is back) and whether its ref names a
/// newer revision than the one mounted (a remount would pick it up).
public struct StoreCheck: Codable, Sendable, Equatable {
    /// The store answered (with the ref, or with a definite refusal such as 404 or 403).
    public var reachable: Bool
    /// The revision and manifest its ref names, when it could be read.
    public var revision: UInt64?
    public var manifest: String?
    /// The store's ref names another manifest with a higher revision than the mounted one.
    public var newer: Bool
    /// Why the ref could not be read.
    public var error: String?
    /// How long the question took, in seconds.
    public var seconds: Double

    /// Seconds the store gets to answer a status question.
    public static let deadline = 2.0

    public static func ask(_ store: any ObjectStore, env: String, mounted: Ref, deadline: Double = StoreCheck.deadline) -> StoreCheck {
        let clock = ContinuousClock()
        let start = clock.now
        func took() -> Double {
            let d = clock.now - start
            return Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18
        }
        do {
            let ref = try Ref.decode(try store.probe(Ref.objectKey(env: env), deadline: deadline))
            return StoreCheck(reachable: true, revision: ref.revision, manifest: ref.manifest.hex,
                              newer: ref.manifest != mounted.manifest && ref.revision > mounted.revision, error: nil, seconds: took())
        } catch let e as StoreError where e.isTransient {
            return StoreCheck(reachable: false, newer: false, error: "\(e)", seconds: took())
        } catch {
            return StoreCheck(reachable: true, newer: false, error: "\(error)", seconds: took())
        }
    }

    /// One line for `envmount status`.
    public var summary: String {
        if !reachable { return "unreachable (\(error ?? "no answer"))" }
        guard let revision else { return "reachable, but the ref cannot be read: \(error ?? "?")" }
        if newer { return "reachable; holds a newer revision \(revision) (manifest \(manifest?.prefix(16) ?? "")): remount to use it" }
        return "reachable; holds revision \(revision)" + (manifest.map { " (manifest \($0.prefix(16)))" } ?? "")
    }
}
