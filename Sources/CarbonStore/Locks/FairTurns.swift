/// First come, first served turns on names, for the tasks of one process. A task that asks for a
/// name's turn while another holds it waits in line (without polling) and is handed the turn in
/// the order it asked; a task whose wait runs out leaves the line. Locks between processes (`flock`)
/// are taken only by the task whose turn it is, so the tasks of one process never starve each other
/// by polling.
final class FairTurns: Sendable {
    private struct Waiter {
        var id: UInt64
        var continuation: CheckedContinuation<Bool, Never>
        /// Leaves the line when the wait runs out (`Deadlines`); cancelled when the turn comes.
        var timer: WaitTimer?
    }

    private struct Line {
        var holder: UInt64
        var waiting: [Waiter] = []
    }

    private struct State {
        var lines: [String: Line] = [:]
        var lastID: UInt64 = 0
    }

    private let state = Locked(State())
    /// Where the waits' deadlines are watched (`Deadlines.shared`, but for tests).
    private let deadlines: Deadlines

    init(deadlines: Deadlines = .shared) {
        self.deadlines = deadlines
    }

    /// Waits up to `wait` for the turn on `name`; returns the turn's token, or nil if the wait ran
    /// out. Give the turn back with `give`.
    func take(_ name: String, wait: Duration) async -> UInt64? {
        let (id, got) = state.withLock { s -> (UInt64, Bool) in
            s.lastID += 1
            guard s.lines[name] == nil else { return (s.lastID, false) }
            s.lines[name] = Line(holder: s.lastID)
            return (s.lastID, true)
        }
        if got { return id }
        let handed = await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
            let now = state.withLock { s -> Bool in
                guard s.lines[name] != nil else {
                    s.lines[name] = Line(holder: id)
                    return true
                }
                // The timer is started under the lock, so that the turn, handed at once, finds it
                // to cancel.
                let timer = WaitTimer.start(at: .now + wait, on: deadlines) { [self] in leaveLine(name, id) }
                s.lines[name]!.waiting.append(Waiter(id: id, continuation: continuation, timer: timer))
                return false
            }
            if now { continuation.resume(returning: true) }
        }
        return handed ? id : nil
    }

    /// Gives the turn to the next in line, if `id` holds it.
    func give(_ name: String, _ id: UInt64) {
        let next = state.withLock { s -> Waiter? in
            guard var line = s.lines[name], line.holder == id else { return nil }
            guard !line.waiting.isEmpty else {
                s.lines[name] = nil
                return nil
            }
            let next = line.waiting.removeFirst()
            line.holder = next.id
            s.lines[name] = line
            return next
        }
        next?.timer?.cancel()
        next?.continuation.resume(returning: true)
    }

    /// A waiter whose wait ran out leaves the line (nothing happens if it already has the turn).
    private func leaveLine(_ name: String, _ id: UInt64) {
        let waiter = state.withLock { s -> Waiter? in
            guard let index = s.lines[name]?.waiting.firstIndex(where: { $0.id == id }) else { return nil }
            return s.lines[name]!.waiting.remove(at: index)
        }
        waiter?.continuation.resume(returning: false)
    }
}
