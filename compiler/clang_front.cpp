/*
 * clang_front.cpp: the generated C to an LLVM module, in memory, with
 * clang's libraries (see clang_front.h).  The driver turns the command
 * line a user would type into the front end's arguments (the host CPU
 * for -march=native, the header folders, the OpenMP runtime) without
 * running anything; the front end then parses the source from an
 * in-memory file.  Needs: GQAC_CLANG_BIN, the clang binary's path when
 * gqac was built: the driver finds clang's own headers (stddef.h, omp.h,
 * immintrin.h) beside it; the binary itself is never run.
 */
#include "clang_front.h"

#include <clang/Basic/Diagnostic.h>
#include <clang/Basic/DiagnosticOptions.h>
#include <clang/CodeGen/CodeGenAction.h>
#include <clang/Driver/Compilation.h>
#include <clang/Driver/Driver.h>
#include <clang/Driver/Job.h>
#include <clang/Frontend/CompilerInstance.h>
#include <clang/Frontend/CompilerInvocation.h>
#include <clang/Frontend/TextDiagnosticPrinter.h>
#include <llvm/IR/LLVMContext.h>
#include <llvm/IR/Module.h>
#include <llvm/Support/Host.h>
#include <llvm/Support/MemoryBuffer.h>
#include <llvm/Support/VirtualFileSystem.h>
#include <llvm/Support/raw_ostream.h>

#include <cstdio>
#include <memory>
#include <string>

#ifndef GQAC_CLANG_BIN
#error "GQAC_CLANG_BIN: the path of the clang that matches the libraries (the Makefile sets it)"
#endif

using namespace clang;

namespace {

/* The flags of the cc backend (jit_cc.c), and -disable-llvm-passes: the
 * caller runs the -O3 pipeline itself, so the phases can be timed. */
const char *const flags[] = {"-std=c99", "-O3", "-march=native", "-ffp-contract=fast", "-fopenmp",
                             "-w", "-fsyntax-only", "-Xclang", "-disable-llvm-passes"};

/* The source as a file only this compilation sees, over the real files
 * (for the system's headers). */
llvm::IntrusiveRefCntPtr<llvm::vfs::FileSystem> files_with(const char *name, const char *src, size_t len) {
    auto mem = llvm::makeIntrusiveRefCnt<llvm::vfs::InMemoryFileSystem>();
    mem->addFile(name, 0, llvm::MemoryBuffer::getMemBufferCopy(llvm::StringRef(src, len), name));
    auto all = llvm::makeIntrusiveRefCnt<llvm::vfs::OverlayFileSystem>(llvm::vfs::getRealFileSystem());
    all->pushOverlay(mem);
    return all;
}

/* The front end's arguments for `clang flags name`, from the driver's one
 * job; false with the driver's messages in diags. */
bool front_end_args(const char *name, llvm::IntrusiveRefCntPtr<llvm::vfs::FileSystem> fs, DiagnosticsEngine &diags,
                    llvm::raw_ostream &out, std::shared_ptr<CompilerInvocation> &inv) {
    driver::Driver drv(GQAC_CLANG_BIN, llvm::sys::getProcessTriple(), diags, "gqac llvm JIT", fs);
    drv.setCheckInputsExist(false); /* the source is in fs alone, which the front end reads */
    std::vector<const char *> argv = {GQAC_CLANG_BIN};
    argv.insert(argv.end(), std::begin(flags), std::end(flags));
    argv.push_back(name);
    std::unique_ptr<driver::Compilation> c(drv.BuildCompilation(argv));
    if (!c || diags.hasErrorOccurred())
        return false;
    const driver::JobList &jobs = c->getJobs();
    if (jobs.size() != 1 || !llvm::isa<driver::Command>(*jobs.begin())) {
        out << "clang's driver made " << jobs.size() << " jobs of the command line, not one compilation";
        return false;
    }
    const llvm::opt::ArgStringList &args = llvm::cast<driver::Command>(*jobs.begin()).getArguments();
    inv = std::make_shared<CompilerInvocation>();
    if (!CompilerInvocation::CreateFromArgs(*inv, args, diags, GQAC_CLANG_BIN))
        return false;
    /* -fsyntax-only only kept the driver to one job: emit the module. */
    inv->getFrontendOpts().ProgramAction = frontend::EmitLLVMOnly;
    /* The driver asks the front end not to free what it built (a process
     * that exits at once); a JIT lives on. */
    inv->getFrontendOpts().DisableFree = false;
    /* No source excerpts, and no "1 error generated." on stderr: the
     * messages go to the caller as text. */
    inv->getDiagnosticOpts().ShowCarets = false;
    return true;
}

/* clang's messages on one line, for the caller's one-line error. */
void copy_message(const std::string &msg, char *err, size_t errlen) {
    std::string one = msg;
    while (!one.empty() && one.back() == '\n')
        one.pop_back();
    for (size_t i = 0; (i = one.find('\n', i)) != std::string::npos;)
        one.replace(i, 1, "; ");
    std::snprintf(err, errlen, "%s", one.empty() ? "clang failed without a message" : one.c_str());
}

} // namespace

extern "C" LLVMModuleRef gqac_clang_compile(LLVMContextRef ctx, const char *name, const char *src, size_t len,
                                            char *err, size_t errlen) {
    std::string messages;
    llvm::raw_string_ostream out(messages);
    llvm::IntrusiveRefCntPtr<DiagnosticOptions> opts = new DiagnosticOptions();
    opts->ShowCarets = false;
    auto *printer = new TextDiagnosticPrinter(out, opts.get());
    DiagnosticsEngine diags(new DiagnosticIDs(), opts, printer);
    auto fs = files_with(name, src, len);
    std::shared_ptr<CompilerInvocation> inv;
    if (!front_end_args(name, fs, diags, out, inv)) {
        copy_message(out.str(), err, errlen);
        return nullptr;
    }
    CompilerInstance clang;
    clang.setInvocation(inv);
    clang.createDiagnostics(printer, false);
    clang.createFileManager(fs);
    EmitLLVMOnlyAction act(llvm::unwrap(ctx));
    if (!clang.ExecuteAction(act)) {
        copy_message(out.str(), err, errlen);
        return nullptr;
    }
    std::unique_ptr<llvm::Module> m = act.takeModule();
    if (!m) {
        copy_message(out.str(), err, errlen);
        return nullptr;
    }
    return llvm::wrap(m.release());
}
