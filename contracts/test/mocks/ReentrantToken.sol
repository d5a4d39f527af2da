// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {LeaseEscrow} from "../../src/LeaseEscrow.sol";

/// @notice A hostile token: while moving tokens for the escrow (`transferFrom` in a deposit,
/// `transfer` in a withdrawal) it calls back into the escrow as itself, once per arming.
/// `swallow` keeps the outer call alive and records the re-entry's revert data; otherwise the
/// re-entry's revert bubbles up through the outer call.
contract ReentrantToken is ERC20 {
    enum Attack {
        None,
        Deposit,
        Withdraw
    }

    LeaseEscrow public escrow;
    Attack public attack;
    uint256 public attackAmount;
    bool public swallow;
    bool public attempted;
    bytes public lastRevert;

    constructor() ERC20("Reentrant", "RE") {}

    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }

    function setEscrow(LeaseEscrow escrow_) external {
        escrow = escrow_;
    }

    function arm(Attack attack_, uint256 amount, bool swallow_) external {
        attack = attack_;
        attackAmount = amount;
        swallow = swallow_;
    }

    /// @notice The token as an escrow account of its own: what a re-entering withdrawal would drain.
    function depositAsSelf(uint256 amount) external {
        _mint(address(this), amount);
        _approve(address(this), address(escrow), amount);
        escrow.deposit(amount);
    }

    function withdrawAsSelf(uint256 amount) external {
        escrow.withdraw(amount);
    }

    function transfer(address to, uint256 value) public override returns (bool) {
        bool ok = super.transfer(to, value);
        _maybeAttack();
        return ok;
    }

    function transferFrom(address from, address to, uint256 value) public override returns (bool) {
        bool ok = super.transferFrom(from, to, value);
        _maybeAttack();
        return ok;
    }

    function _maybeAttack() private {
        Attack current = attack;
        if (current == Attack.None) return;
        attack = Attack.None; // one shot
        attempted = true;
        bytes memory call = current == Attack.Deposit
            ? abi.encodeCall(LeaseEscrow.deposit, (attackAmount))
            : abi.encodeCall(LeaseEscrow.withdraw, (attackAmount));
        if (current == Attack.Deposit) {
            _mint(address(this), attackAmount);
            _approve(address(this), address(escrow), attackAmount);
        }
        (bool ok, bytes memory data) = address(escrow).call(call);
        if (ok) return;
        if (!swallow) {
            assembly ("memory-safe") {
                revert(add(data, 32), mload(data))
            }
        }
        lastRevert = data;
    }
}
