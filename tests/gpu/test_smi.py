"""nvidia-smi (gitproof.gpu.smi) against fake nvidia-smi executables: the query, the
retries an older driver needs, and every way the program can fail."""
from __future__ import annotations

import pytest

from gitproof import gpu
from gitproof.gpu import GpuDevice, smi
from tests.gpu.machines import A100_0, A100_1, H100, OLD_DRIVER, fake_smi, printing

pytestmark = pytest.mark.usefixtures("no_cached_visibility")


def smi_devices(program: str, include_uuid: bool = True) -> list[GpuDevice]:
    """The devices of the receipt when nvidia-smi is the source that answers (NVML is blocked)."""
    return gpu.detect_facts(include_uuid, environ={smi.ENV_PROGRAM: program}, import_torch=False).devices


def test_one_device(tmp_path):
    devices = smi_devices(str(printing(tmp_path, H100)))
    assert devices == [GpuDevice(0, "NVIDIA H100 80GB HBM3",
                                 "GPU-11111111-2222-3333-4444-555555555555",
                                 "550.54.15", 81559, "9.0", pci_bus_id="00000000:18:00.0",
                                 mig="disabled", visible=True)]


def test_query_arguments(tmp_path):
    log = tmp_path / "args"
    program = fake_smi(tmp_path, f'echo "$@" > "{log}"\necho "{H100}"\n')
    rows = smi.query(str(program))
    assert log.read_text().split() == [
        "--query-gpu=index,name,uuid,driver_version,memory.total,compute_cap,pci.bus_id,"
        "mig.mode.current",
        "--format=csv,noheader,nounits",
    ]
    assert rows == [{
        "index": "0", "name": "NVIDIA H100 80GB HBM3",
        "uuid": "GPU-11111111-2222-3333-4444-555555555555", "driver_version": "550.54.15",
        "memory.total": "81559", "compute_cap": "9.0", "pci.bus_id": "00000000:18:00.0",
        "mig.mode.current": "Disabled",
    }]


def test_two_devices_sorted_by_index(tmp_path):
    devices = smi_devices(str(printing(tmp_path, A100_1, A100_0)))
    assert [d.index for d in devices] == [0, 1]
    assert {d.memory_mib for d in devices} == {81920}
    assert [d.mig for d in devices] == [None, "enabled"]
    assert gpu.summary(devices) == "2x NVIDIA A100-SXM4-80GB"


def test_old_driver_retries_without_the_fields_it_rejects(tmp_path):
    """Drivers before ~510 reject compute_cap, before ~450 also mig.mode.current."""
    log = tmp_path / "queries"
    program = fake_smi(tmp_path, f"""\
echo "$1" >> "{log}"
case "$1" in
  *mig.mode*) echo 'Field "mig.mode.current" is not a valid field to query.'; exit 2 ;;
esac
case "$1" in
  *compute_cap*) echo 'Field "compute_cap" is not a valid field to query.'; exit 2 ;;
esac
echo "{OLD_DRIVER}"
""")
    rows = smi.query(str(program))
    assert not isinstance(rows, str) and "compute_cap" not in rows[0] and "mig.mode.current" not in rows[0]
    assert log.read_text().splitlines() == [
        "--query-gpu=index,name,uuid,driver_version,memory.total,compute_cap,pci.bus_id,"
        "mig.mode.current",
        "--query-gpu=index,name,uuid,driver_version,memory.total,compute_cap,pci.bus_id",
        "--query-gpu=index,name,uuid,driver_version,memory.total,pci.bus_id",
    ]
    (device,) = smi_devices(str(program))
    assert device == GpuDevice(0, "Tesla K80", None, "418.87.01", 11441, None,
                               pci_bus_id="00000000:04:00.0", visible=True)


def test_a_required_field_rejected_is_a_failure(tmp_path):
    program = fake_smi(tmp_path, """echo 'Field "uuid" is not a valid field to query.'; exit 2\n""")
    assert smi.query(str(program)) == 'exited 2: Field "uuid" is not a valid field to query.'
    facts = gpu.detect_facts(environ={"GITPROOF_NVIDIA_SMI": str(program)}, import_torch=False)
    assert facts.notes[1] == 'nvidia-smi: exited 2: Field "uuid" is not a valid field to query.'


def test_failing_nvidia_smi_means_no_gpu(tmp_path):
    program = fake_smi(tmp_path, "echo 'No devices were found'\nexit 6\n")
    assert smi.query(str(program)) == "exited 6: No devices were found"
    assert smi_devices(str(program)) == []


def test_absent_program(tmp_path):
    absent = str(tmp_path / "no-such-nvidia-smi")
    assert smi.query(absent) == f"cannot run {absent}: No such file or directory"
    assert smi_devices(absent) == []


def test_garbled_output_is_not_evidence(tmp_path):
    assert smi.query(str(printing(tmp_path, "0, half a row"))) == "output not understood"


def test_hanging_program_times_out(tmp_path, monkeypatch):
    monkeypatch.setattr(smi, "TIMEOUT_S", 0.5)
    assert smi.query(str(fake_smi(tmp_path, "exec sleep 30\n"))) == "timed out after 0.5s"


def test_uuid_opt_out(tmp_path):
    (device,) = smi_devices(str(printing(tmp_path, H100)), include_uuid=False)
    assert device.uuid is None
    assert "uuid" not in device.to_dict()


def test_env_var_selects_program(tmp_path, monkeypatch):
    monkeypatch.setenv("GITPROOF_NVIDIA_SMI", str(printing(tmp_path, H100)))
    assert gpu.summary(gpu.detect_facts(import_torch=False).devices) == "NVIDIA H100 80GB HBM3"
    assert gpu.gpu_visible() is True


def test_nvidia_smi_output_that_is_not_utf8_is_not_a_crash(tmp_path):
    program = fake_smi(tmp_path,
                       "printf '0, NVIDIA \\377\\376, GPU-1, 550, 81559, 9.0, 00000000:18:00.0, Disabled\\n'\n")
    [device_] = smi_devices(str(program))
    assert device_.name.startswith("NVIDIA ") and "\ufffd" in device_.name
