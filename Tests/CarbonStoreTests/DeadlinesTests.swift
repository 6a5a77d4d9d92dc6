import CarbonStoreTestSupport
import Foundation
import Testing

@testable import CarbonStore

#if canImport(Glibc)
    import Glibc
#endif

/// The deadlines of lock waits, watched by one thread: an action runs once its deadline has
/// passed and never after it was cancelled, and waits of one length, one after another, do not
/// wake the thread each time. (Conditions are polled with `FileLockTests.eventually`.)
@Suite struct DeadlinesTests {
    @Test func aDeadlineRunsItsActionOnceAfterItHasPassed() async throws {
        let deadlines = Deadlines()
        let ran = CarbonStore.Locked([ContinuousClock.Instant]())
        let start = ContinuousClock.now
        let token = deadlines.schedule(at: start + .milliseconds(80)) { ran.withLock { $0.append(.now) } }
        #expect(token != nil)
        #expect(await FileLockTests.eventually { !ran.withLock { $0 }.isEmpty })
        try await Task.sleep(for: .milliseconds(100))
        let times = ran.withLock { $0 }
        #expect(times.count == 1)
        #expect(try #require(times.first) - start >= .milliseconds(80))
        #expect(deadlines.counts.scheduled == 0)
    }

    @Test func aCancelledDeadlineNeverRuns() async throws {
        let deadlines = Deadlines()
        let ran = CarbonStore.Locked(0)
        let token = try #require(
            deadlines.schedule(at: .now + .milliseconds(40)) { ran.withLock { $0 += 1 } })
        deadlines.cancel(token)
        // A later one, to see the thread come past the cancelled one's time.
        let later = CarbonStore.Locked(false)
        _ = deadlines.schedule(at: .now + .milliseconds(120)) { later.withLock { $0 = true } }
        #expect(await FileLockTests.eventually { later.withLock { $0 } })
        #expect(ran.withLock { $0 } == 0)
        #expect(deadlines.counts.scheduled == 0)
    }

    @Test func deadlinesRunInTheirOrderWhateverTheOrderTheyWereScheduledIn() async throws {
        let deadlines = Deadlines()
        let order = CarbonStore.Locked([Int]())
        let now = ContinuousClock.now
        // The first asks the thread to sleep for a minute; each later one is earlier and must
        // wake it.
        for (i, ms) in [60_000, 300, 200, 100].enumerated() {
            _ = deadlines.schedule(at: now + .milliseconds(ms)) { order.withLock { $0.append(i) } }
        }
        #expect(await FileLockTests.eventually { order.withLock { $0.count } == 3 })
        #expect(order.withLock { $0 } == [3, 2, 1])
        #expect(ContinuousClock.now - now < .seconds(30))
        #expect(deadlines.counts.scheduled == 1)
    }

    @Test func waitsOfOneLengthOneAfterAnotherDoNotWakeTheThread() async throws {
        let deadlines = Deadlines()
        // As lock waits of 10 s, each over before its deadline: scheduled, then cancelled.
        for _ in 0..<100 {
            let token = try #require(deadlines.schedule(at: .now + .seconds(10)) {})
            // The wait itself: time for a woken thread to run (and for the thread to start and
            // find no deadline left: it then sleeps until the latest one, not for ever).
            try await Task.sleep(for: .microseconds(300))
            deadlines.cancel(token)
        }
        let (scheduled, wakes) = deadlines.counts
        #expect(scheduled == 0)
        // The thread went to sleep towards the first deadline and was not woken by the others
        // (one wake allowed for a spurious one).
        #expect(wakes <= 1, "the thread woke \(wakes) times for 100 waits")
    }

    @Test func deadlinesDueTogetherRunInTheirOrder() async throws {
        let deadlines = Deadlines()
        let order = CarbonStore.Locked([Int]())
        let at = ContinuousClock.now + .milliseconds(100)
        // Due at one wake of the thread: by deadline, then in the order scheduled.
        let offsets = [5, 1, 3, 3, 0, 3, 4, 3]
        for (i, ns) in offsets.enumerated() {
            _ = deadlines.schedule(at: at + .nanoseconds(ns)) { order.withLock { $0.append(i) } }
        }
        #expect(await FileLockTests.eventually { order.withLock { $0.count } == offsets.count })
        #expect(order.withLock { $0 } == [4, 1, 2, 3, 5, 7, 6, 0])
    }

    @Test func withNoDeadlineLeftTheThreadSleepsUntilTheLatestOneScheduled() async throws {
        let deadlines = Deadlines()
        // A wait of 10 s that ended in time, and a short one that ran out: the thread then has
        // no deadline left, and sleeps until the first one's time, not for ever.
        let long = try #require(deadlines.schedule(at: .now + .seconds(10)) {})
        try await Task.sleep(for: .milliseconds(20))
        deadlines.cancel(long)
        let ran = CarbonStore.Locked(false)
        _ = deadlines.schedule(at: .now + .milliseconds(5)) { ran.withLock { $0 = true } }
        #expect(await FileLockTests.eventually { ran.withLock { $0 } })
        try await Task.sleep(for: .milliseconds(20))
        let before = deadlines.counts.wakes
        // More waits of 10 s, each over before the thread could look at it: each deadline is later
        // than the one the thread sleeps towards. (Sleeping for ever instead, the thread would be
        // woken by each, and find nothing each time.)
        for _ in 0..<20 {
            let token = try #require(deadlines.schedule(at: .now + .seconds(10)) {})
            deadlines.cancel(token)
            try await Task.sleep(for: .microseconds(300))
        }
        // (One wake allowed for a spurious one; sleeping for ever, the thread would wake for each.)
        #expect(
            deadlines.counts.wakes <= before + 1, "the thread woke \(deadlines.counts.wakes - before) times")
    }

    @Test func aThreadThatCannotStartIsTriedAgainAtMostOnceASecond() async throws {
        let tries = CarbonStore.Locked(0)
        let deadlines = Deadlines(mayStartThread: {
            tries.withLock { $0 += 1 }
            return false
        })
        for _ in 0..<50 { #expect(deadlines.schedule(at: .now + .seconds(1)) {} == nil) }
        #expect(tries.withLock { $0 } == 1)
        // A second later, it is tried again.
        try await Task.sleep(for: .milliseconds(1_100))
        #expect(deadlines.schedule(at: .now + .seconds(1)) {} == nil)
        #expect(tries.withLock { $0 } == 2)
    }

    @Test func withoutItsThreadAWaitIsTimedByATask() async throws {
        let deadlines = Deadlines(mayStartThread: { false })
        #expect(deadlines.schedule(at: .now) {} == nil)
        let ran = CarbonStore.Locked(false)
        let timer = WaitTimer.start(at: .now + .milliseconds(20), on: deadlines) {
            ran.withLock { $0 = true }
        }
        guard case .task = timer else {
            Issue.record("expected a task, got \(timer)")
            return
        }
        #expect(await FileLockTests.eventually { ran.withLock { $0 } })
        // And a cancelled one does not run.
        let never = CarbonStore.Locked(false)
        WaitTimer.start(at: .now + .milliseconds(20), on: deadlines) { never.withLock { $0 = true } }.cancel()
        try await Task.sleep(for: .milliseconds(100))
        #expect(!never.withLock { $0 })
    }

    @Test func aTurnHandedOverCancelsItsDeadline() async throws {
        let deadlines = Deadlines()
        let turns = FairTurns(deadlines: deadlines)
        let holder = try #require(await turns.take("u", wait: .seconds(5)))
        let waiter = Task { await turns.take("u", wait: .seconds(30)) }
        #expect(await FileLockTests.eventually { deadlines.counts.scheduled == 1 })
        turns.give("u", holder)
        let token = try #require(await waiter.value)
        #expect(deadlines.counts.scheduled == 0)
        turns.give("u", token)
        // A wait that runs out is answered by its deadline.
        let second = try #require(await turns.take("u", wait: .seconds(5)))
        let start = ContinuousClock.now
        #expect(await turns.take("u", wait: .milliseconds(60)) == nil)
        #expect(ContinuousClock.now - start >= .milliseconds(60))
        #expect(deadlines.counts.scheduled == 0)
        turns.give("u", second)
    }

    @Test func aFlockWaitCancelsItsDeadlineWhenItGetsTheLockOrTimesOut() async throws {
        let dir = try TemporaryDirectory("deadlines")
        defer { dir.remove() }
        let path = dir.path + "/.lock"
        let deadlines = Deadlines()
        let pool = KeptThreads(name: "test-deadlines", maximum: 2)
        let holder = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        #expect(flock(holder, LOCK_EX | LOCK_NB) == 0)
        defer { close(holder) }

        // Timed out by its deadline while the lock is held.
        let first = open(path, O_RDWR | O_CLOEXEC)
        let timedOut = try #require(BlockingFlock(fd: first, path: path, pool: pool, deadlines: deadlines))
        let start = ContinuousClock.now
        #expect(try await timedOut.wait(until: start + .milliseconds(100)) == false)
        #expect(ContinuousClock.now - start >= .milliseconds(100))
        #expect(deadlines.counts.scheduled == 0)

        // Handed the lock before its deadline: the deadline is cancelled.
        let second = open(path, O_RDWR | O_CLOEXEC)
        let handed = try #require(BlockingFlock(fd: second, path: path, pool: pool, deadlines: deadlines))
        let waiting = Task { try await handed.wait(until: .now + .seconds(30)) }
        #expect(await FileLockTests.eventually { deadlines.counts.scheduled == 1 })
        #expect(flock(holder, LOCK_UN) == 0)
        #expect(try await waiting.value == true)
        #expect(deadlines.counts.scheduled == 0)
        _ = flock(second, LOCK_UN)
        close(second)
    }
}
