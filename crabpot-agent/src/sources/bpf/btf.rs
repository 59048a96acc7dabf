//! Struct field offsets from the kernel's BTF (`/sys/kernel/btf/vmlinux`), for the kernel
//! programs that read the task's executed file and working directory (`crabpot-ebpf`
//! `task.rs`). Aya has no CO-RE relocations; this is the small part of it we need: find a
//! struct by name and a member by name, through anonymous structs and unions.
use std::collections::HashMap;

use crabpot_common::KernelOffsets;

const BTF_MAGIC: u16 = 0xeb9f;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum BtfError {
    #[error("BTF is truncated or malformed at byte {0}")]
    Malformed(usize),
    #[error("BTF has no struct `{0}`")]
    NoStruct(String),
    #[error("BTF struct `{0}` has no member `{1}`")]
    NoMember(String, String),
    #[error("BTF type kind {0} is unknown")]
    UnknownKind(u32),
}

struct Member {
    name: u32,
    type_id: u32,
    bit_offset: u32,
}

enum Type {
    Composite { name: u32, members: Vec<Member> },
    Other,
}

/// The composite types of a BTF blob and its string section.
pub(crate) struct Btf {
    strings: Vec<u8>,
    types: Vec<Type>,
    by_name: HashMap<String, usize>,
}

fn u32_at(data: &[u8], at: usize) -> Result<u32, BtfError> {
    data.get(at..at + 4)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_le_bytes)
        .ok_or(BtfError::Malformed(at))
}

/// Bytes that follow a type's 12-byte header, by kind.
fn extra_len(kind: u32, vlen: usize) -> Result<usize, BtfError> {
    Ok(match kind {
        1 | 14 | 17 => 4,
        2 | 7 | 8 | 9 | 10 | 11 | 12 | 16 | 18 => 0,
        3 => 12,
        4 | 5 | 15 | 19 => 12 * vlen,
        6 | 13 => 8 * vlen,
        other => return Err(BtfError::UnknownKind(other)),
    })
}

impl Btf {
    pub(crate) fn parse(data: &[u8]) -> Result<Self, BtfError> {
        let magic = data.get(0..2).ok_or(BtfError::Malformed(0))?;
        if u16::from_le_bytes([magic[0], magic[1]]) != BTF_MAGIC {
            return Err(BtfError::Malformed(0));
        }
        let header_len = u32_at(data, 4)? as usize;
        let (type_off, type_len) = (u32_at(data, 8)? as usize, u32_at(data, 12)? as usize);
        let (str_off, str_len) = (u32_at(data, 16)? as usize, u32_at(data, 20)? as usize);
        let section = |off: usize, len: usize| {
            let start = header_len + off;
            data.get(start..start + len)
                .ok_or(BtfError::Malformed(start))
        };
        let type_data = section(type_off, type_len)?;
        let strings = section(str_off, str_len)?.to_vec();
        // Type id 0 is void.
        let mut types = vec![Type::Other];
        let mut at = 0;
        while at < type_data.len() {
            let name = u32_at(type_data, at)?;
            let info = u32_at(type_data, at + 4)?;
            let (kind, vlen, kflag) = ((info >> 24) & 0x1f, (info & 0xffff) as usize, info >> 31);
            at += 12;
            let extra = extra_len(kind, vlen)?;
            if kind == KIND_STRUCT || kind == KIND_UNION {
                let mut members = Vec::with_capacity(vlen);
                for i in 0..vlen {
                    let m = at + 12 * i;
                    let offset = u32_at(type_data, m + 8)?;
                    members.push(Member {
                        name: u32_at(type_data, m)?,
                        type_id: u32_at(type_data, m + 4)?,
                        bit_offset: if kflag == 1 {
                            offset & 0xff_ffff
                        } else {
                            offset
                        },
                    });
                }
                types.push(Type::Composite { name, members });
            } else {
                types.push(Type::Other);
            }
            at += extra;
        }
        let mut btf = Btf {
            strings,
            types,
            by_name: HashMap::new(),
        };
        for (id, ty) in btf.types.iter().enumerate() {
            if let Type::Composite { name, .. } = ty {
                let name = btf.string(*name).to_string();
                // The first definition wins (vmlinux has one per name).
                btf.by_name.entry(name).or_insert(id);
            }
        }
        Ok(btf)
    }

    fn string(&self, offset: u32) -> &str {
        let rest = self.strings.get(offset as usize..).unwrap_or(&[]);
        let end = rest.iter().position(|b| *b == 0).unwrap_or(rest.len());
        std::str::from_utf8(&rest[..end]).unwrap_or("")
    }

    /// Byte offset of `member` in struct (or union) `name`, looking into anonymous members.
    pub(crate) fn offset(&self, name: &str, member: &str) -> Result<u32, BtfError> {
        let id = *self
            .by_name
            .get(name)
            .ok_or_else(|| BtfError::NoStruct(name.into()))?;
        self.find(id, member, 0)
            .map(|bits| bits / 8)
            .ok_or_else(|| BtfError::NoMember(name.into(), member.into()))
    }

    fn find(&self, id: usize, member: &str, depth: u32) -> Option<u32> {
        let Some(Type::Composite { members, .. }) = self.types.get(id) else {
            return None;
        };
        if depth > 8 {
            return None;
        }
        for m in members {
            if m.name != 0 && self.string(m.name) == member {
                return Some(m.bit_offset);
            }
        }
        members.iter().filter(|m| m.name == 0).find_map(|m| {
            let inner = self.find(m.type_id as usize, member, depth + 1)?;
            Some(m.bit_offset + inner)
        })
    }
}

/// The offsets the kernel programs need, from `btf`.
pub(crate) fn kernel_offsets(btf: &Btf) -> Result<KernelOffsets, BtfError> {
    let o = |s: &str, m: &str| btf.offset(s, m);
    // i_nlink is a const alias of __i_nlink in a union; either name will do.
    let nlink = o("inode", "__i_nlink").or_else(|_| o("inode", "i_nlink"))?;
    Ok(KernelOffsets {
        valid: 1,
        task_mm: o("task_struct", "mm")?,
        task_fs: o("task_struct", "fs")?,
        task_files: o("task_struct", "files")?,
        mm_exe_file: o("mm_struct", "exe_file")?,
        mm_arg_start: o("mm_struct", "arg_start")?,
        mm_arg_end: o("mm_struct", "arg_end")?,
        file_path: o("file", "f_path")?,
        file_inode: o("file", "f_inode")?,
        path_dentry: o("path", "dentry")?,
        inode_ino: o("inode", "i_ino")?,
        inode_sb: o("inode", "i_sb")?,
        inode_nlink: nlink,
        sb_dev: o("super_block", "s_dev")?,
        sb_magic: o("super_block", "s_magic")?,
        dentry_name: o("dentry", "d_name")?,
        dentry_parent: o("dentry", "d_parent")?,
        dentry_sb: o("dentry", "d_sb")?,
        qstr_name: o("qstr", "name")?,
        fs_pwd: o("fs_struct", "pwd")?,
        files_fdt: o("files_struct", "fdt")?,
        fdt_max_fds: o("fdtable", "max_fds")?,
        fdt_fd: o("fdtable", "fd")?,
        _pad: 0,
    })
}

/// The offsets for the running kernel, or why not (the programs then read nothing through
/// them and the agent falls back on `/proc`).
pub(crate) fn running_kernel_offsets() -> Result<KernelOffsets, String> {
    let path = "/sys/kernel/btf/vmlinux";
    let data = std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let btf = Btf::parse(&data).map_err(|e| format!("{path}: {e}"))?;
    kernel_offsets(&btf).map_err(|e| format!("{path}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_of_the_running_kernel_when_it_has_btf() {
        // Hosts without BTF skip; where it exists the offsets must resolve and be sane.
        let Ok(data) = std::fs::read("/sys/kernel/btf/vmlinux") else {
            return;
        };
        let btf = Btf::parse(&data).expect("vmlinux BTF parses");
        let offsets = kernel_offsets(&btf).expect("every field is found");
        assert_eq!(offsets.valid, 1);
        assert!(offsets.task_mm > 0 && offsets.task_fs > 0);
        assert!(offsets.mm_arg_end > offsets.mm_arg_start);
        assert_eq!(btf.offset("path", "mnt"), Ok(0));
        assert!(btf.offset("task_struct", "no_such_field").is_err());
    }

    #[test]
    fn malformed_btf_is_an_error_not_a_panic() {
        assert!(Btf::parse(&[]).is_err());
        assert!(Btf::parse(&[0x9f, 0xeb, 1, 0, 24, 0, 0, 0]).is_err());
        let mut header = vec![0x9f, 0xeb, 1, 0];
        for value in [24u32, 0, 12, 12, 1] {
            header.extend_from_slice(&value.to_le_bytes());
        }
        header.extend_from_slice(&[0; 4]);
        header.extend_from_slice(&[0; 12]);
        assert!(Btf::parse(&header).is_err(), "a type past the data");
    }
}
