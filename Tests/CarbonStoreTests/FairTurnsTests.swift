import Testing

@testable import CarbonStore

/// The in-process line in front of a lock: first come, first served, and a waiter whose wait runs
/// out leaves without taking a turn from anyone.
@Suite struct FairTurnsTests {
    @Test func turnsAreHandedOutInTheOrderAsked() async throws {
        let turns = FairTurns()
        let first = try #require(await turns.take("u", wait: .seconds(5)))
        let order = Locked([Int]())
        try await withThrowingTaskGroup(of: Void.self) { group in
            for i in 0..<6 {
                group.addTask {
                    let t = await turns.take("u", wait: .seconds(30))
                    let token = try #require(t)
                    order.withLock { $0.append(i) }
                    turns.give("u", token)
                }
                // Let task i join the line before task i + 1.
                try await Task.sleep(for: .milliseconds(30))
            }
            turns.give("u", first)
            try await group.waitForAll()
        }
        #expect(order.withLock { $0 } == [0, 1, 2, 3, 4, 5])
    }

    @Test func aWaiterWhoseWaitRunsOutLeavesTheLine() async throws {
        let turns = FairTurns()
        let holder = try #require(await turns.take("u", wait: .seconds(5)))
        #expect(await turns.take("u", wait: .milliseconds(50)) == nil)
        // Other names are independent.
        let other = try #require(await turns.take("v", wait: .milliseconds(50)))
        turns.give("v", other)
        turns.give("u", holder)
        // The line is empty again: the next taker gets the turn at once.
        let next = try #require(await turns.take("u", wait: .zero))
        turns.give("u", next)
        // Giving a turn one does not hold changes nothing.
        turns.give("u", holder)
        #expect(await turns.take("u", wait: .zero) != nil)
    }
}
