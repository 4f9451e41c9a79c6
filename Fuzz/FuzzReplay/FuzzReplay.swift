import Foundation

#if FUZZING
import CFuzzer
#endif

/// What every fuzz target's `main` calls with its check.
///
/// Built by `make fuzz` (`-sanitize=fuzzer,address -D FUZZING`) it hands the check to
/// libFuzzer's driver, with libFuzzer's arguments. Built as usual (every `swift build`, and
/// `make test`) it is a program that runs the same check over the files and folders it is
/// given: the seed corpus, and any crash libFuzzer saved, so a crash found once stays a test.
public enum FuzzReplay {
    nonisolated(unsafe) static var check: (([UInt8]) -> Void)?

    public static func main(_ name: String, _ check: @escaping ([UInt8]) -> Void) -> Never {
        #if FUZZING
        Self.check = check
        var argc = CommandLine.argc
        var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
        exit(LLVMFuzzerRunDriver(&argc, &argv, fuzzerTestOneInput))
        #else
        replay(name, check)
        exit(0)
        #endif
    }

    static func replay(_ name: String, _ check: ([UInt8]) -> Void) {
        var inputs = 0
        for argument in CommandLine.arguments.dropFirst() {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: argument, isDirectory: &isDirectory) else {
                FileHandle.standardError.write(Data("\(name): \(argument): no such file or folder\n".utf8))
                exit(66)
            }
            let files = isDirectory.boolValue
                ? ((try? FileManager.default.contentsOfDirectory(atPath: argument)) ?? []).sorted().map { "\(argument)/\($0)" }
                : [argument]
            for file in files {
                guard let data = FileManager.default.contents(atPath: file) else { continue }
                check(Array(data))
                inputs += 1
            }
        }
        print("\(name): \(inputs) inputs replayed, none crashed")
    }
}

#if FUZZING
/// libFuzzer's entry point, for the driver started by `FuzzReplay.main`.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzerTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let check = FuzzReplay.check else { fatalError("the fuzz target's main did not run: no check to fuzz") }
    check(data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? [])
    return 0
}
#endif
