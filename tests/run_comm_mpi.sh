#!/bin/sh
# tests/run_comm_mpi.sh — multi-process tests of the communicators (runtime/comm*.c) and
# the self-spawn launcher (runtime/launch.c), run by `make test` (BUILD names the build
# directory; default build). Builds tests/comm_driver.c against $BUILD/libnmc.a, then:
#   self-spawn, "shm" comm (no MPI needed): 2 and 4 local ranks — every collective
#     exact; rank 1 exits 3 -> the supervisor names it and stops the rest; rank 1
#     hangs -> the others time out naming rank 1; a spec mismatch names the ranks
#   mpirun -np 2 and -np 4, "mpi" comm (skipped with a message when mpirun/mpicc are
#     missing): the same cases, plus a world-size mismatch
# Failure cases run with NMC_COMM_TIMEOUT_S=5 and under `timeout 60`: a hang fails.
# When libnmc.a was built without MPI (the Makefile has no NMC_MPI yet), comm_mpi.c is
# compiled here with mpicc's flags and linked ahead of the archive.
set -u
BUILD=${BUILD:-build}
LIB=$BUILD/libnmc.a
fails=0
checks=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { fails=$((fails + 1)); echo "FAIL: $*"; }
ok() { checks=$((checks + 1)); }

[ -f "$LIB" ] || { echo "FAIL: $LIB is missing (run make first)"; exit 1; }
CC=${CC:-cc}
CFLAGS="-O1 -g -std=c11 -D_GNU_SOURCE -pthread -Iruntime -Igenerated -Ikernels"
LIBS="-lm -lpthread"
syms=$(nm "$LIB" 2>/dev/null)
if echo "$syms" | grep -q '__asan_init'; then
    CFLAGS="$CFLAGS -fsanitize=address,undefined -fno-omit-frame-pointer"
    # OpenMPI keeps its allocations until exit by design
    ASAN_OPTIONS=${ASAN_OPTIONS:-}:detect_leaks=0
    export ASAN_OPTIONS
fi
CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
if echo "$syms" | grep -q ' U cuda'; then
    LIBS="$LIBS -L$CUDA_HOME/lib64 -Wl,-rpath,$CUDA_HOME/lib64 -lcudart -lcublasLt -lcublas -lstdc++"
    echo "$syms" | grep -q ' U nccl' && LIBS="$LIBS -lnccl"
    CFLAGS="$CFLAGS -DNMC_CUDA=1 -I$CUDA_HOME/include"
fi
have_mpi=0
if command -v mpirun >/dev/null 2>&1 && command -v mpicc >/dev/null 2>&1; then
    have_mpi=1
fi
EXTRA=""
if [ $have_mpi = 1 ]; then
    MPI_CFLAGS=$(mpicc --showme:compile)
    LIBS="$LIBS $(mpicc --showme:link)"
    if ! echo "$syms" | grep -q ' U MPI_Init_thread'; then
        $CC $CFLAGS -DNMC_MPI=1 $MPI_CFLAGS -c -o "$tmp/comm_mpi.o" runtime/comm_mpi.c ||
            { echo "FAIL: compiling runtime/comm_mpi.c with MPI"; exit 1; }
        EXTRA="$tmp/comm_mpi.o"
    fi
fi
DRIVER=$tmp/comm_driver
# shellcheck disable=SC2086
$CC $CFLAGS -o "$DRIVER" tests/comm_driver.c $EXTRA "$LIB" $LIBS ||
    { echo "FAIL: building tests/comm_driver.c"; exit 1; }

# run NAME EXPECT_RC CMD...: output in $tmp/NAME.out; EXPECT_RC "nonzero" = any but 0/124
run() {
    name=$1 want=$2
    shift 2
    timeout 60 "$@" >"$tmp/$name.out" 2>&1
    rc=$?
    if [ $rc = 124 ]; then
        fail "$name: still running after 60 s (a hang)"; sed 's/^/    /' "$tmp/$name.out"; return 1
    fi
    if { [ "$want" = nonzero ] && [ $rc = 0 ]; } || { [ "$want" != nonzero ] && [ $rc != "$want" ]; }; then
        fail "$name: exit status $rc, expected $want"; sed 's/^/    /' "$tmp/$name.out"; return 1
    fi
    ok
}
# has NAME PATTERN: the output of NAME matches the grep -E pattern
has() {
    if grep -Eq -- "$2" "$tmp/$1.out"; then ok; else
        fail "$1: output lacks /$2/"; sed 's/^/    /' "$tmp/$1.out"
    fi
}
count() { # NAME PATTERN N
    n=$(grep -Ec -- "$2" "$tmp/$1.out")
    if [ "$n" = "$3" ]; then ok; else fail "$1: $n lines match /$2/, expected $3"; fi
}

export TMPDIR="$tmp"
unset NMC_RANK NMC_WORLD_SIZE NMC_RDZV_DIR OMPI_COMM_WORLD_RANK PMI_RANK RANK WORLD_SIZE
export NMC_COMM_TIMEOUT_S=5

# ---- self-spawn + shm ---------------------------------------------------------------------
for n in 2 4; do
    run spawn_ops_$n 0 "$DRIVER" spawn $n ops &&
        count spawn_ops_$n "^rank [0-9]/$n \(shm, local [0-9]/$n\): all collectives ok$" $n
    run spawn_die_$n 3 "$DRIVER" spawn $n die &&
        has spawn_die_$n "error\[launch-rank-failed\]: rank 1 of $n exited with status 3; stopped the other $((n - 1)) running rank"
    run spawn_hang_$n 1 "$DRIVER" spawn $n hang &&
        has spawn_hang_$n "allreduce \(op #3\) timed out after 5 s \(NMC_COMM_TIMEOUT_S\): rank 1 \(pid [0-9]+\) did not arrive, last entered op #2 barrier" &&
        has spawn_hang_$n "error\[launch-rank-failed\]: rank [02-9] of $n exited with status 1"
    run spawn_spec_$n 1 "$DRIVER" spawn $n spec &&
        has spawn_spec_$n "error\[comm-spec-mismatch\]: $((n / 2)) of $n ranks run a different job spec than rank 0"
done
has spawn_spec_4 "ranks 1 \([0-9a-f]{16}\), 3 \([0-9a-f]{16}\)$"
leftover=$(find "$tmp" -maxdepth 1 -name 'nmc-rdzv-*' | wc -l)
[ "$leftover" = 0 ] && ok || fail "spawn left $leftover rendezvous directories behind"

# ---- mpirun + mpi ---------------------------------------------------------------------------
if [ $have_mpi = 0 ]; then
    echo "SKIP: mpirun/mpicc not found: the mpi cases did not run (apt-get install openmpi-bin libopenmpi-dev)"
    echo "comm (shm/spawn): $checks checks, $fails failed"
    [ $fails = 0 ]
    exit
fi
# local only, quiet: shared memory between ranks, no single-copy (containers forbid
# process_vm_readv), no binding (oversubscribed CI cores)
MPIRUN="mpirun --allow-run-as-root --oversubscribe --bind-to none --mca btl self,vader --mca btl_vader_single_copy_mechanism none --mca plm_rsh_agent false"
for n in 2 4; do
    run mpi_ops_$n 0 $MPIRUN -np $n "$DRIVER" --comm mpi ops &&
        count mpi_ops_$n "^rank [0-9]/$n \(mpi, local [0-9]/$n\): all collectives ok$" $n
    # mpirun itself notices the exit and ends the job, naming process [[job,1],1]
    run mpi_die_$n nonzero $MPIRUN -np $n "$DRIVER" --comm mpi die &&
        has mpi_die_$n "rank 1: exiting with status 3 on purpose" &&
        has mpi_die_$n "Process name: +\[\[[0-9]+,[0-9]+\],1\]" &&
        has mpi_die_$n "Exit code: +3"
    run mpi_hang_$n nonzero $MPIRUN -np $n "$DRIVER" --comm mpi hang &&
        has mpi_hang_$n "error\[comm-timeout\]: rank [02-9]: allreduce_sum \(collective #2, 16 elements\) did not complete within 5 s \(NMC_COMM_TIMEOUT_S\)" &&
        has mpi_hang_$n "^  rank 1 has not arrived \(alive, last finished collective #1\)$"
    run mpi_spec_$n nonzero $MPIRUN -np $n "$DRIVER" --comm mpi spec &&
        has mpi_spec_$n "error\[comm-spec-mismatch\]: $((n / 2)) of $n ranks run a different job spec than rank 0"
done
run mpi_world 2 $MPIRUN -np 2 "$DRIVER" world 4 &&
    has mpi_world "error\[launch-world-mismatch\]: the job asks for 4 GPUs \(parallelism.num_nodes × num_gpus_per_node\) but 2 ranks were started \(openmpi launch\)"

echo "comm (shm/spawn + mpi): $checks checks, $fails failed"
[ $fails = 0 ]
