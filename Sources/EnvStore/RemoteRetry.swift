import CurlKit
import Glibc

/// How remote stores (HTTP and S3) retry: exponential backoff with jitter on transient failures
/// (5xx, 429, resets, timeouts, truncated bodies), a few attempts per mirror before moving to the
/// next, mirrors tried round-robin until the deadline; the whole call bounded by `deadline`.
public struct RetryPolicy: Sendable, Equatable {
    /// Attempts on one mirror (per round) before moving to the next.
    public var attemptsPerMirror: Int = 3
    /// First backoff, in seconds; doubled (times `multiplier`) per retry up to `maxBackoff`.
    public var initialBackoff: Double = 0.1
    public var maxBackoff: Double = 2.0
    public var multiplier: Double = 2.0
    /// Each sleep is drawn uniformly from [backoff × (1 − jitter), backoff].
    public var jitter: Double = 0.5
    /// Seconds for a whole call, retries and mirror switches included.
    public var deadline: Double = 60
    /// A refused connection or a name that does not resolve is an answer ("not reachable now"),
    /// not a reason to try that mirror again: for probes that have a cached answer to fall back on.
    public var failFastWhenUnreachable = false

    public init(deadline: Double = 60) { self.deadline = deadline }
}

/// What one attempt against one base URL concluded.
enum AttemptResult<T> {
    case success(T)
    /// Worth trying again on the same mirror after a pause (the reason is kept for the message).
    case transient(String)
    /// Nothing answered at that address (connection refused, host name unknown): transient, but
    /// not retried on that mirror when the policy fails fast.
    case unreachable(String)
    /// This mirror cannot serve the key (404, 403, TLS failure): go to the next mirror, and report
    /// this error if no mirror does better.
    case skipMirror(StoreError)
    /// Give up at once (malformed request, missing bucket).
    case fatal(StoreError)
}

/// Runs attempts under a `RetryPolicy`; shared by HTTPStore and S3Store.
struct RetryRunner: Sendable {
    let policy: RetryPolicy
    let store: String

    func run<T>(key: String, bases: [String], _ attempt: (_ base: String, _ timeLeft: Double) -> AttemptResult<T>) throws(StoreError) -> T {
        let clock = ContinuousClock()
        let start = clock.now
        func elapsed() -> Double {
            let d = clock.now - start
            return Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18
        }
        func timeLeft() -> Double { policy.deadline - elapsed() }
        var backoff = policy.initialBackoff
        func pause() {
            let b = backoff
            backoff = min(backoff * policy.multiplier, policy.maxBackoff)
            let s = min(Double.random(in: (b * (1 - policy.jitter))...b), max(0, timeLeft()))
            if s > 0 { usleep(useconds_t(s * 1_000_000)) }
        }

        var alive = Array(bases.indices)
        var skipped: [StoreError] = []
        var lastTransient: String?
        var transientMirrors = Set<Int>()
        var attempts = 0
        rounds: while !alive.isEmpty {
            var again: [Int] = []
            for (n, i) in alive.enumerated() {
                for a in 0..<max(1, policy.attemptsPerMirror) {
                    let left = timeLeft()
                    if left <= 0 { break rounds }
                    attempts += 1
                    var result = attempt(bases[i], left)
                    if case .unreachable(let why) = result, !policy.failFastWhenUnreachable { result = .transient(why) }
                    switch result {
                    case .success(let v):
                        return v
                    case .fatal(let e):
                        throw e
                    case .skipMirror(let e):
                        skipped.append(e)
                        transientMirrors.remove(i)
                    case .unreachable(let why):
                        // Nothing listens there: go on to the next mirror, never back to this one.
                        transientMirrors.insert(i)
                        lastTransient = bases.count > 1 ? "\(bases[i]): \(why)" : why
                    case .transient(let why):
                        transientMirrors.insert(i)
                        lastTransient = bases.count > 1 ? "\(bases[i]): \(why)" : why
                        if a + 1 < policy.attemptsPerMirror {
                            pause()
                            continue
                        }
                        again.append(i)
                        // Pause before the next round, not before switching to a fresh mirror.
                        if n + 1 == alive.count { pause() }
                    }
                    break
                }
            }
            alive = again
        }
        if let lastTransient, !transientMirrors.isEmpty {
            let t = (elapsed() * 10).rounded() / 10
            throw StoreError.unavailable(key: key, store: store,
                detail: "gave up after \(attempts) attempt\(attempts == 1 ? "" : "s") in \(t) s (deadline \(policy.deadline) s); last error: \(lastTransient)")
        }
        if let e = skipped.first(where: { !$0.isNotFound }) { throw e }
        if let e = skipped.first { throw e }
        throw StoreError.unavailable(key: key, store: store, detail: "no attempt made within the deadline of \(policy.deadline) s")
    }
}

/// Helpers shared by the remote stores.
enum Remote {
    /// Statuses worth retrying: server errors, throttling, request timeout.
    static func isTransientStatus(_ status: Int) -> Bool {
        status >= 500 || status == 429 || status == 408
    }

    /// A transfer error as an attempt result.
    static func attempt<T>(_ e: CurlError, key: String, store: String, caBundle: CABundle? = nil) -> AttemptResult<T> {
        switch e.kind {
        case .invalid: return .fatal(.failed(key: key, store: store, detail: e.description))
        case .tls: return .skipMirror(.failed(key: key, store: store, detail: "\(e.description); \(CABundle.tlsHint(caBundle))"))
        case .connect, .dns: return .unreachable(e.description)
        default: return .transient(e.description)
        }
    }

    /// Cache-Control for HTTP caches between a store and its readers (a site squid, a CDN):
    /// - on a PUT, what the object tells every cache: chunks, manifests and profiles are named by
    ///   their content (or keyed by a manifest) and never change, so a year and `immutable`;
    ///   refs move, so `no-cache` (a cache may keep one but must revalidate it before each use);
    /// - on a GET of a ref, `no-cache` as a request header, so a cache revalidates even if the
    ///   origin sent no Cache-Control of its own.
    /// Every other GET is a plain GET of the whole object with no per-request variation (no
    /// Range, no query, no Cache-Control), so any cache can serve it.
    static func cacheHeaders(_ method: HTTPMethod, key: String) -> [(String, String)] {
        let isRef = key.hasPrefix("refs/")
        switch method {
        case .put: return [("Cache-Control", isRef ? "no-cache" : "public, max-age=31536000, immutable")]
        case .get: return isRef ? [("Cache-Control", "no-cache")] : []
        case .head, .post, .delete: return []
        }
    }

    /// RFC 3986 percent-encoding as AWS SigV4 wants it: unreserved characters stay, everything
    /// else becomes %XX (upper case); `/` stays when `keepSlash`.
    static func percentEncode(_ s: String, keepSlash: Bool) -> String {
        let hex = Array("0123456789ABCDEF".utf8)
        var out = [UInt8]()
        out.reserveCapacity(s.utf8.count)
        for b in s.utf8 {
            switch b {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                 UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "_"),
                 UInt8(ascii: "."), UInt8(ascii: "~"):
                out.append(b)
            case UInt8(ascii: "/") where keepSlash:
                out.append(b)
            default:
                out.append(UInt8(ascii: "%"))
                out.append(hex[Int(b >> 4)])
                out.append(hex[Int(b & 0xf)])
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// A short excerpt of a response body for messages.
    static func excerpt(_ body: [UInt8]) -> String {
        let s = String(decoding: body.prefix(200), as: UTF8.self)
        return s.split(whereSeparator: { $0 == "\n" || $0 == "\r" }).joined(separator: " ")
    }
}
