import Synchronization

/// Requests in flight, and whether the service has stopped taking new ones (after SIGTERM).
public final class DrainState: Sendable {
    private struct State {
        var inFlight = 0
        var draining = false
        var waiters: [CheckedContinuation<Void, Never>] = []
    }
    private let state = Mutex(State())

    public init() {}

    /// Counts a request in; false when the service is draining (answer 503, do not count it).
    func enter() -> Bool {
        state.withLock { s in
            if s.draining { return false }
            s.inFlight += 1
            return true
        }
    }

    func leave() {
        let waiters = state.withLock { s -> [CheckedContinuation<Void, Never>] in
            s.inFlight -= 1
            guard s.inFlight == 0, s.draining else { return [] }
            defer { s.waiters = [] }
            return s.waiters
        }
        for w in waiters { w.resume() }
    }

    public var inFlight: Int { state.withLock { $0.inFlight } }
    public var isDraining: Bool { state.withLock { $0.draining } }

    /// Stops taking requests, and returns when none is in flight.
    public func drain() async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let done = state.withLock { s -> Bool in
                s.draining = true
                if s.inFlight == 0 { return true }
                s.waiters.append(c)
                return false
            }
            if done { c.resume() }
        }
    }
}
