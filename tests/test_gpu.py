"""gitproof.gpu against fakes of its boundaries: an nvidia-smi executable, the
nvidia-ml-py bindings (tests/fakes/pynvml.py) and a stand-in torch module."""
from __future__ import annotations

import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest

from gitproof import gpu, nvml
from gitproof.gpu import GpuDevice, GpuFacts
from tests import nvml_fake
from tests.nvml_fake import H100_UUID, device, machine

H100 = ("0, NVIDIA H100 80GB HBM3, GPU-11111111-2222-3333-4444-555555555555, 550.54.15, 81559, "
        "9.0, 00000000:18:00.0, Disabled")
A100_0 = ("0, NVIDIA A100-SXM4-80GB, GPU-aaaaaaaa-0000-0000-0000-0000, 535.104.05, 81920, 8.0, "
          "00000000:07:00.0, [N/A]")
A100_1 = ("1, NVIDIA A100-SXM4-80GB, GPU-bbbbbbbb-0000-0000-0000-0000, 535.104.05, 81920, 8.0, "
          "00000000:0F:00.0, Enabled")
OLD_DRIVER = "0, Tesla K80, [N/A], 418.87.01, 11441, 0000:04:00.0"


def fake_smi(tmp_path: Path, body: str, name: str = "nvidia-smi") -> Path:
    """Write an executable shell script standing in for nvidia-smi."""
    script = tmp_path / name
    script.write_text("#!/bin/sh\n" + body)
    script.chmod(0o755)
    return script


def printing(tmp_path: Path, *lines: str) -> Path:
    text = "\n".join(lines)
    return fake_smi(tmp_path, f"cat <<'EOF'\n{text}\nEOF\n")


@pytest.fixture(autouse=True)
def no_cached_visibility(monkeypatch):
    """Each test starts with no NVML (whatever is installed here) and nothing cached."""
    nvml_fake.block(monkeypatch)
    gpu.gpu_visible.cache_clear()
    yield
    gpu.gpu_visible.cache_clear()
    nvml.reset()


@pytest.fixture
def fake_nvml(monkeypatch, tmp_path):
    """fake_nvml(state) puts the fake nvidia-ml-py bindings in place with that machine."""
    def install(state: dict | None) -> None:
        nvml_fake.install(monkeypatch, tmp_path / "nvml.json", state)
    return install


def test_one_device(tmp_path):
    devices = gpu.detect_gpus(program=str(printing(tmp_path, H100)))
    assert devices == [GpuDevice(0, "NVIDIA H100 80GB HBM3",
                                 "GPU-11111111-2222-3333-4444-555555555555",
                                 "550.54.15", 81559, "9.0", pci_bus_id="00000000:18:00.0",
                                 mig="disabled")]


def test_query_arguments(tmp_path):
    log = tmp_path / "args"
    program = fake_smi(tmp_path, f'echo "$@" > "{log}"\necho "{H100}"\n')
    rows = gpu.query_nvidia_smi(str(program))
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
    devices = gpu.detect_gpus(program=str(printing(tmp_path, A100_1, A100_0)))
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
    rows = gpu.query_nvidia_smi(str(program))
    assert rows is not None and "compute_cap" not in rows[0] and "mig.mode.current" not in rows[0]
    assert log.read_text().splitlines() == [
        "--query-gpu=index,name,uuid,driver_version,memory.total,compute_cap,pci.bus_id,"
        "mig.mode.current",
        "--query-gpu=index,name,uuid,driver_version,memory.total,compute_cap,pci.bus_id",
        "--query-gpu=index,name,uuid,driver_version,memory.total,pci.bus_id",
    ]
    (device,) = gpu.detect_gpus(program=str(program))
    assert device == GpuDevice(0, "Tesla K80", None, "418.87.01", 11441, None,
                               pci_bus_id="00000000:04:00.0")


def test_a_required_field_rejected_is_a_failure(tmp_path):
    program = fake_smi(tmp_path, """echo 'Field "uuid" is not a valid field to query.'; exit 2\n""")
    assert gpu.query_nvidia_smi(str(program)) is None
    facts = gpu.detect_facts(environ={"GITPROOF_NVIDIA_SMI": str(program)}, import_torch=False)
    assert facts.notes[1] == 'nvidia-smi: exited 2: Field "uuid" is not a valid field to query.'


def test_failing_nvidia_smi_means_no_gpu(tmp_path):
    program = fake_smi(tmp_path, "echo 'No devices were found'\nexit 6\n")
    assert gpu.query_nvidia_smi(str(program)) is None
    assert gpu.detect_gpus(program=str(program)) == []


def test_absent_program(tmp_path):
    assert gpu.query_nvidia_smi(str(tmp_path / "no-such-nvidia-smi")) is None
    assert gpu.detect_gpus(program=str(tmp_path / "no-such-nvidia-smi")) == []


def test_garbled_output_is_not_evidence(tmp_path):
    assert gpu.query_nvidia_smi(str(printing(tmp_path, "0, half a row"))) is None


def test_hanging_program_times_out(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu, "TIMEOUT_S", 0.5)
    assert gpu.query_nvidia_smi(str(fake_smi(tmp_path, "exec sleep 30\n"))) is None


def test_uuid_opt_out(tmp_path):
    (device,) = gpu.detect_gpus(include_uuid=False, program=str(printing(tmp_path, H100)))
    assert device.uuid is None
    assert "uuid" not in device.to_dict()


def test_env_var_selects_program(tmp_path, monkeypatch):
    monkeypatch.setenv("GITPROOF_NVIDIA_SMI", str(printing(tmp_path, H100)))
    assert gpu.summary(gpu.detect_gpus()) == "NVIDIA H100 80GB HBM3"
    assert gpu.gpu_visible() is True


def test_gpu_visible_false_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("GITPROOF_NVIDIA_SMI", str(tmp_path / "absent"))
    assert gpu.gpu_visible() is False
    monkeypatch.setenv("GITPROOF_NVIDIA_SMI", str(printing(tmp_path, H100)))
    assert gpu.gpu_visible() is False  # cached for the process


def test_dict_keys_in_order():
    device = GpuDevice(1, "NVIDIA L4", "GPU-1234", "550.54.15", 23034, "8.9",
                       pci_bus_id="00000000:3B:00.0", cuda_driver="12.4", mig="disabled",
                       visible=False)
    assert list(device.to_dict().items()) == [
        ("index", 1), ("name", "NVIDIA L4"), ("uuid", "GPU-1234"),
        ("pci_bus_id", "00000000:3B:00.0"), ("driver", "550.54.15"), ("cuda_driver", "12.4"),
        ("memory_mib", 23034), ("compute_capability", "8.9"), ("mig", "disabled"),
        ("visible", False),
    ]
    anonymous = GpuDevice(0, "NVIDIA L4", None, "550.54.15", 23034, None)
    assert "uuid" not in anonymous.to_dict()


def test_summary_strings():
    h100 = GpuDevice(0, "NVIDIA H100 80GB HBM3", None, "550", 81559, "9.0")
    l4 = GpuDevice(2, "NVIDIA L4", None, "550", 23034, "8.9")
    assert gpu.summary([]) == "none"
    assert gpu.summary([h100]) == "NVIDIA H100 80GB HBM3"
    assert gpu.summary([h100, h100]) == "2x NVIDIA H100 80GB HBM3"
    assert gpu.summary([h100, h100, l4]) == "2x NVIDIA H100 80GB HBM3, NVIDIA L4"


# --- canonical PCI bus ids -----------------------------------------------------


@pytest.mark.parametrize("text, canonical", [
    ("00000000:18:00.0", "00000000:18:00.0"),
    ("0000:3b:00.0", "00000000:3B:00.0"),      # CUDA / sysfs spelling
    ("18:00.0", "00000000:18:00.0"),
    (" 00000001:af:1f.7 ", "00000001:AF:1F.7"),
    ("not a bus id", None), ("", None), (None, None), ("00:00:00:00.0", None),
])
def test_canonical_bus_id(text, canonical):
    assert gpu.canonical_bus_id(text) == canonical


# --- detect_facts: sources and notes -------------------------------------------

A100_UUIDS = ("GPU-aaaaaaaa-0000-0000-0000-000000000000", "GPU-aabbbbbb-0000-0000-0000-000000000000")
MIG_UUID = "MIG-c0c0c0c0-0000-0000-0000-000000000000"
NO_SMI = {"GITPROOF_NVIDIA_SMI": "/nonexistent/nvidia-smi"}


def two_a100s(**second: object) -> dict:
    return machine(device("NVIDIA A100-SXM4-80GB", A100_UUIDS[0], "00000000:07:00.0", 81920, (8, 0)),
                   device("NVIDIA A100-SXM4-80GB", A100_UUIDS[1], "00000000:0F:00.0", 81920, (8, 0),
                          **second))


def facts_with(environ: dict[str, str] | None = None, **options) -> GpuFacts:
    return gpu.detect_facts(environ={**NO_SMI, **(environ or {})}, import_torch=False, **options)


def visibility(environ: dict[str, str]) -> list[bool | None]:
    return [device.visible for device in facts_with(environ).devices]


def test_facts_from_nvml(fake_nvml):
    fake_nvml(machine(device()))
    facts = facts_with()
    assert facts == GpuFacts(
        source="nvml",
        devices=[GpuDevice(0, "NVIDIA H100 80GB HBM3", H100_UUID, "550.54.15", 81559, "9.0",
                           pci_bus_id="00000000:18:00.0", cuda_driver="12.4", mig="disabled",
                           visible=True)],
        confidential_computing={"feature": "on", "environment": "prod", "dev_tools": "off"},
        cuda_visible_devices=None, notes=[])
    assert facts.to_dict() == {
        "source": "nvml", "cuda_visible_devices": None,
        "confidential_computing": {"feature": "on", "environment": "prod", "dev_tools": "off"},
        "notes": []}


def test_facts_from_two_gpus_with_mig(fake_nvml):
    fake_nvml(two_a100s(mig_mode=[1, 0], mig_devices=[{"uuid": MIG_UUID}]))
    facts = facts_with()
    assert [(d.index, d.mig, d.visible) for d in facts.devices] == [
        (0, "disabled", True), (1, "enabled", True)]
    assert gpu.summary(facts.devices) == "2x NVIDIA A100-SXM4-80GB"


def test_nvml_answer_spawns_no_nvidia_smi(fake_nvml, tmp_path):
    marker = tmp_path / "ran"
    smi = fake_smi(tmp_path, f'touch "{marker}"\necho "{H100}"\n')
    fake_nvml(machine(device()))
    facts = gpu.detect_facts(environ={"GITPROOF_NVIDIA_SMI": str(smi)}, import_torch=False)
    assert facts.source == "nvml" and not marker.exists()


def test_uuid_opt_out_still_resolves_uuid_entries(fake_nvml):
    fake_nvml(two_a100s())
    facts = facts_with({"CUDA_VISIBLE_DEVICES": "GPU-aab"}, include_uuid=False)
    assert [(d.uuid, d.visible) for d in facts.devices] == [(None, False), (None, True)]
    assert all("uuid" not in d.to_dict() for d in facts.devices)


def test_nvml_init_failure_falls_back_to_nvidia_smi(fake_nvml, tmp_path):
    fake_nvml(machine(device(), init_error=9))
    facts = gpu.detect_facts(environ={"GITPROOF_NVIDIA_SMI": str(printing(tmp_path, H100))},
                             import_torch=False)
    assert facts.source == "nvidia-smi"
    assert facts.notes == ["nvml: nvmlInit failed: Driver Not Loaded"]
    assert facts.confidential_computing is None
    [found] = facts.devices
    assert (found.pci_bus_id, found.cuda_driver, found.mig, found.visible) == (
        "00000000:18:00.0", None, "disabled", True)


def test_nvml_disabled_by_environment(fake_nvml, tmp_path, monkeypatch):
    fake_nvml(machine(device()))
    monkeypatch.setenv("GITPROOF_NVML", "off")
    facts = gpu.detect_facts(environ={"GITPROOF_NVIDIA_SMI": str(printing(tmp_path, H100))},
                             import_torch=False)
    assert facts.source == "nvidia-smi"
    assert facts.notes == ["nvml: disabled by GITPROOF_NVML=off"]


def test_nothing_answers():
    facts = gpu.detect_facts(environ={**NO_SMI, "CUDA_VISIBLE_DEVICES": "0"}, import_torch=False)
    assert facts == GpuFacts("none", [], None, "0", [
        "nvml: nvidia-ml-py is not installed",
        "nvidia-smi: cannot run /nonexistent/nvidia-smi: No such file or directory",
        "torch: not imported by the tests",
    ])


@pytest.mark.parametrize("script, note", [
    ("echo 'No devices were found'\nexit 6\n", "nvidia-smi: exited 6: No devices were found"),
    ("echo '0, half a row'\n", "nvidia-smi: output not understood"),
    ("exit 9\n", "nvidia-smi: exited 9"),
])
def test_nvidia_smi_notes(tmp_path, script, note):
    facts = facts_with({"GITPROOF_NVIDIA_SMI": str(fake_smi(tmp_path, script))})
    assert facts.notes[1] == note


def test_nvidia_smi_timeout_note(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu, "TIMEOUT_S", 0.5)
    facts = facts_with({"GITPROOF_NVIDIA_SMI": str(fake_smi(tmp_path, "exec sleep 30\n"))})
    assert facts.notes[1] == "nvidia-smi: timed out after 0.5s"


def test_nvidia_smi_answering_zero_devices_wins(tmp_path):
    facts = facts_with({"GITPROOF_NVIDIA_SMI": str(fake_smi(tmp_path, "exit 0\n"))})
    assert (facts.source, facts.devices) == ("nvidia-smi", [])


# --- the torch source ----------------------------------------------------------


def fake_torch(*props: SimpleNamespace, error: Exception | None = None) -> ModuleType:
    """Just enough of torch.cuda for the torch source: a count and device properties."""
    def get_device_properties(ordinal: int) -> SimpleNamespace:
        if error is not None:
            raise error
        return props[ordinal]
    torch = ModuleType("torch")
    torch.cuda = SimpleNamespace(device_count=lambda: len(props),
                                 get_device_properties=get_device_properties)
    return torch


L4 = SimpleNamespace(name="NVIDIA L4", total_memory=23034 * 1024 * 1024, major=8, minor=9,
                     uuid="12345678-aaaa-bbbb-cccc-1234567890ab",
                     pci_domain_id=0, pci_bus_id=0x3B, pci_device_id=0)


def test_facts_from_torch(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", fake_torch(L4))
    facts = gpu.detect_facts(environ={**NO_SMI, "CUDA_VISIBLE_DEVICES": "3"}, import_torch=False)
    assert facts.source == "torch"
    assert facts.devices == [GpuDevice(0, "NVIDIA L4", "GPU-12345678-aaaa-bbbb-cccc-1234567890ab",
                                       "", 23034, "8.9", pci_bus_id="00000000:3B:00.0",
                                       visible=True)]
    assert facts.cuda_visible_devices == "3"
    assert facts.notes[0] == "nvml: nvidia-ml-py is not installed"


def test_torch_without_uuid_or_pci_fields(monkeypatch):
    old = SimpleNamespace(name="Tesla V100", total_memory=16 << 30, major=7, minor=0)
    monkeypatch.setitem(sys.modules, "torch", fake_torch(old))
    [found] = facts_with(include_uuid=True).devices
    assert (found.uuid, found.pci_bus_id, found.memory_mib) == (None, None, 16384)


def test_torch_failure_is_a_note(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", fake_torch(L4, error=RuntimeError("CUDA error")))
    facts = facts_with()
    assert facts.source == "none"
    assert facts.notes[-1] == "torch: RuntimeError: CUDA error"


def test_torch_not_installed(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # import raises ImportError, as if absent
    facts = gpu.detect_facts(environ=NO_SMI, import_torch=True)
    assert facts.source == "none"
    assert facts.notes[-1] == "torch: not installed"


# --- CUDA_VISIBLE_DEVICES ------------------------------------------------------


@pytest.mark.parametrize("value, expected", [
    (None, [True, True]),
    ("", [False, False]),
    ("-1", [False, False]),
    ("1", [False, True]),
    ("1,0", [True, True]),
    (" 1 ", [False, True]),
    ("0,abc,1", [True, False]),      # CUDA stops at the first invalid entry
    ("2,0", [False, False]),         # out of range is invalid too
    ("GPU-aaaaaaaa", [True, False]),  # unique prefix
    ("GPU-aa", [False, False]),      # ambiguous prefix: invalid
    ("GPU-ffff,1", [False, False]),  # no such GPU: invalid, stop
    ("1,GPU-aaaaaaaa", [True, True]),
])
def test_cuda_visible_devices_on_identical_gpus(fake_nvml, value, expected):
    fake_nvml(two_a100s())
    environ = {} if value is None else {"CUDA_VISIBLE_DEVICES": value}
    assert visibility(environ) == expected


def mixed_machine() -> dict:
    """An L4 at index 0 but on a higher PCI bus than the H100 at index 1."""
    return machine(device("NVIDIA L4", "GPU-4444", "00000000:3B:00.0", 23034, (8, 9)),
                   device("NVIDIA H100 80GB HBM3", "GPU-8888", "00000000:18:00.0"))


def test_ordinals_on_different_gpus_cannot_be_placed(fake_nvml):
    """CUDA orders different GPUs fastest first, which no source here can rank."""
    fake_nvml(mixed_machine())
    assert visibility({"CUDA_VISIBLE_DEVICES": "0"}) == [None, None]
    assert visibility({"CUDA_VISIBLE_DEVICES": "0,GPU-4444"}) == [True, None]
    assert visibility({"CUDA_VISIBLE_DEVICES": "GPU-8888"}) == [False, True]


def test_pci_bus_id_order_places_ordinals(fake_nvml):
    fake_nvml(mixed_machine())
    assert visibility({"CUDA_VISIBLE_DEVICES": "0", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}) == [
        False, True]


def test_mig_entries(fake_nvml):
    fake_nvml(two_a100s(mig_mode=[1, 1], mig_devices=[{"uuid": MIG_UUID}]))
    assert visibility({"CUDA_VISIBLE_DEVICES": MIG_UUID}) == [False, True]
    assert visibility({"CUDA_VISIBLE_DEVICES": "MIG-ffff,0"}) == [False, False]  # NVML knows all
    assert visibility({"CUDA_VISIBLE_DEVICES": "0"}) == [None, None]  # ordinals count MIG devices


def test_mig_entries_without_nvml(tmp_path):
    smi = str(printing(tmp_path, A100_0, A100_1))
    facts = gpu.detect_facts(environ={"GITPROOF_NVIDIA_SMI": smi, "CUDA_VISIBLE_DEVICES": MIG_UUID},
                             import_torch=False)
    assert [d.visible for d in facts.devices] == [None, None]
    legacy = f"MIG-{A100_1.split(', ')[2]}/1/0"  # drivers before R470 embed the GPU's UUID
    facts = gpu.detect_facts(environ={"GITPROOF_NVIDIA_SMI": smi, "CUDA_VISIBLE_DEVICES": legacy},
                             import_torch=False)
    assert [d.visible for d in facts.devices] == [False, True]


def test_uuid_entries_when_a_uuid_is_unknown(tmp_path):
    no_uuid = A100_1.replace("GPU-bbbbbbbb-0000-0000-0000-0000", "[N/A]").replace("Enabled", "Disabled")
    smi = str(printing(tmp_path, A100_0, no_uuid))
    facts = gpu.detect_facts(environ={"GITPROOF_NVIDIA_SMI": smi,
                                      "CUDA_VISIBLE_DEVICES": "1,GPU-aaaa"}, import_torch=False)
    assert [d.visible for d in facts.devices] == [None, True]


# --- gpu_visible ---------------------------------------------------------------


def test_gpu_visible_asks_nvml_and_spawns_nothing(fake_nvml, tmp_path, monkeypatch):
    marker = tmp_path / "ran"
    monkeypatch.setenv("GITPROOF_NVIDIA_SMI", str(fake_smi(tmp_path, f'touch "{marker}"\nexit 6\n')))
    fake_nvml(machine(device()))
    assert gpu.gpu_visible() is True
    assert not marker.exists()
    assert "nvmlDeviceGetCount" in nvml_fake.module().calls


@pytest.mark.parametrize("value, visible", [("", False), ("-1", False), ("0", True),
                                            ("GPU-nope", False), (None, True)])
def test_gpu_visible_honours_cuda_visible_devices(fake_nvml, monkeypatch, value, visible):
    fake_nvml(machine(device()))
    if value is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", value)
    assert gpu.gpu_visible() is visible


def test_gpu_visible_with_ordinals_that_cannot_be_placed(fake_nvml, monkeypatch):
    fake_nvml(mixed_machine())
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    assert gpu.gpu_visible() is True  # some GPU is visible even if we cannot say which


def test_gpu_visible_no_devices_from_nvml(fake_nvml, monkeypatch):
    fake_nvml(machine())
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert gpu.gpu_visible() is False


def test_gpu_visible_falls_back_to_imported_torch_only(monkeypatch, tmp_path):
    monkeypatch.setenv("GITPROOF_NVIDIA_SMI", str(tmp_path / "absent"))
    monkeypatch.setitem(sys.modules, "torch", fake_torch(L4, error=RuntimeError("not asked")))
    assert gpu.gpu_visible() is True
    gpu.gpu_visible.cache_clear()
    monkeypatch.setitem(sys.modules, "torch", fake_torch())
    assert gpu.gpu_visible() is False


# --- GpuFacts as receipt JSON --------------------------------------------------


def test_facts_dict_keys_in_order():
    devices = [GpuDevice(0, "NVIDIA H100 80GB HBM3", None, "550.54.15", 81559, "9.0")]
    facts = GpuFacts("nvidia-smi", devices, None, "0,1", ["nvml: nvidia-ml-py is not installed"])
    assert list(facts.to_dict()) == ["source", "cuda_visible_devices", "confidential_computing",
                                     "notes"]
    assert facts.to_dict()["notes"] == ["nvml: nvidia-ml-py is not installed"]


@pytest.mark.parametrize("value, redacted", [
    ("GPU-11111111-2222-3333-4444-555555555555", "GPU-redacted"),
    ("0,GPU-abc,MIG-GPU-abc/1/0", "0,GPU-redacted,MIG-redacted"),
    ("1,0", "1,0"),
    ("", ""),
])
def test_uuid_opt_out_also_hides_uuids_in_cuda_visible_devices(tmp_path, monkeypatch, value, redacted):
    monkeypatch.setenv("GITPROOF_NVIDIA_SMI", str(printing(tmp_path, H100)))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", value)
    private = gpu.detect_facts(include_uuid=False, import_torch=False)
    assert private.cuda_visible_devices == redacted
    assert gpu.detect_facts(include_uuid=True, import_torch=False).cuda_visible_devices == value
    monkeypatch.setenv("GITPROOF_NVIDIA_SMI", str(tmp_path / "absent"))
    assert gpu.detect_facts(include_uuid=False, import_torch=False).cuda_visible_devices == redacted


@pytest.mark.parametrize("value", ["0,\u00b2", "\u0663", "0,1\u00b2"])
def test_non_ascii_digits_are_not_ordinals(fake_nvml, monkeypatch, value):
    fake_nvml(machine(device(), device(uuid="GPU-22222222-2222-2222-2222-222222222222",
                                       bus_id="00000000:3B:00.0")))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", value)
    facts = gpu.detect_facts(import_torch=False)  # CUDA stops at the entry; so do we, without a crash
    assert facts.source == "nvml" and len(facts.devices) == 2
    assert gpu.gpu_visible() is (value != "\u0663")


@pytest.mark.parametrize("value, redacted", [
    ('"GPU-00102030-4050-6070-8090-a0b0c0d0e0f0"', '"GPU-redacted"'),
    ("0 GPU-00102030-4050-6070-8090-a0b0c0d0e0f0", "0 GPU-redacted"),
    ("00102030-4050-6070-8090-A0B0C0D0E0F0", "GPU-redacted"),
    ("'MIG-00102030-4050-6070-8090-a0b0c0d0e0f0',1", "'MIG-redacted',1"),
])
def test_uuid_opt_out_hides_uuids_however_they_are_written(value, redacted):
    assert gpu.redact_uuids(value) == redacted


def test_nvidia_smi_output_that_is_not_utf8_is_not_a_crash(tmp_path):
    program = fake_smi(tmp_path, "printf '0, NVIDIA \\377\\376, GPU-1, 550, 81559, 9.0, 00000000:18:00.0, Disabled\\n'\n")
    [device_] = gpu.detect_gpus(program=str(program))
    assert device_.name.startswith("NVIDIA ") and "\ufffd" in device_.name
