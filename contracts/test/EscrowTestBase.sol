// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {IAccessControl} from "@openzeppelin/contracts/access/IAccessControl.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {Pausable} from "@openzeppelin/contracts/utils/Pausable.sol";

import {ILeaseEscrow} from "../src/ILeaseEscrow.sol";
import {LeaseEscrow} from "../src/LeaseEscrow.sol";
import {MarketToken} from "../src/MarketToken.sol";
import {Test} from "./utils/Test.sol";

/// @notice One escrow over MarketToken with every role held by its own account, and the helpers the
/// unit suites share to fund tenants, register providers and open leases.
abstract contract EscrowTestBase is Test {
    uint256 internal constant FEE_BPS = 250; // 2.5 %
    uint256 internal constant MIN_STAKE = 1_000e6;
    uint64 internal constant UNBONDING_DELAY = 7 days;
    uint64 internal constant SETTLE_WINDOW = 1 hours;
    uint256 internal constant RATE = 36e6; // 10_000 wei a second
    uint64 internal constant MAX_DURATION = 2 hours;
    uint256 internal constant RESERVED = 72e6; // quote(RATE, MAX_DURATION)
    uint256 internal constant START = 1_700_000_000;

    MarketToken internal token;
    LeaseEscrow internal escrow;

    address internal admin;
    address internal operator;
    address internal arbiter;
    address internal guardian;
    address internal treasury;
    address internal tenant;
    address internal tenant2;
    address internal provider;
    address internal provider2;
    address internal stranger;

    bytes32 internal OPERATOR;
    bytes32 internal ARBITER;
    bytes32 internal GUARDIAN;
    bytes32 internal constant ADMIN = 0x00;

    function setUp() public virtual {
        vm.warp(START);
        admin = makeAddr("admin");
        operator = makeAddr("operator");
        arbiter = makeAddr("arbiter");
        guardian = makeAddr("guardian");
        treasury = makeAddr("treasury");
        tenant = makeAddr("tenant");
        tenant2 = makeAddr("tenant2");
        provider = makeAddr("provider");
        provider2 = makeAddr("provider2");
        stranger = makeAddr("stranger");

        token = new MarketToken(address(this));
        escrow = _deploy(FEE_BPS);
    }

    /// @dev A fresh escrow over `token` with `feeBps`, the roles granted to their accounts.
    function _deploy(uint256 feeBps) internal returns (LeaseEscrow deployed) {
        deployed = new LeaseEscrow(IERC20(address(token)), admin, treasury, feeBps, MIN_STAKE, UNBONDING_DELAY, SETTLE_WINDOW);
        OPERATOR = deployed.OPERATOR_ROLE();
        ARBITER = deployed.ARBITER_ROLE();
        GUARDIAN = deployed.GUARDIAN_ROLE();
        vm.startPrank(admin);
        deployed.grantRole(OPERATOR, operator);
        deployed.grantRole(ARBITER, arbiter);
        deployed.grantRole(GUARDIAN, guardian);
        vm.stopPrank();
    }

    // ------------------------------------------------------------------ funding

    function _mintApprove(address who, uint256 amount) internal {
        token.mint(who, amount);
        vm.prank(who);
        token.approve(address(escrow), type(uint256).max);
    }

    function _deposit(address who, uint256 amount) internal {
        _mintApprove(who, amount);
        vm.prank(who);
        escrow.deposit(amount);
    }

    function _register(address who, uint256 stake) internal {
        _mintApprove(who, stake);
        vm.prank(who);
        escrow.registerProvider(stake);
    }

    function _cap(address who, uint256 cap) internal {
        vm.prank(who);
        escrow.setLeaseCap(cap);
    }

    // ------------------------------------------------------------------ leases

    /// @dev tenant funded with exactly RESERVED and capped at it, provider registered at MIN_STAKE,
    /// and lease `leaseId` (job leaseId + 100) opened at RATE for MAX_DURATION.
    function _openDefault(uint256 leaseId) internal returns (uint64 deadline) {
        if (!escrow.getProvider(provider).registered) _register(provider, MIN_STAKE);
        _deposit(tenant, RESERVED);
        _cap(tenant, RESERVED);
        vm.prank(operator);
        escrow.openLease(leaseId, leaseId + 100, tenant, provider, RATE, MAX_DURATION);
        deadline = uint64(block.timestamp) + MAX_DURATION + SETTLE_WINDOW;
    }

    function _pause() internal {
        vm.prank(guardian);
        escrow.pause();
    }

    // ------------------------------------------------------------------ expected reverts

    function _unauthorized(address who, bytes32 role) internal pure returns (bytes memory) {
        return abi.encodeWithSelector(IAccessControl.AccessControlUnauthorizedAccount.selector, who, role);
    }

    function _enforcedPause() internal pure returns (bytes memory) {
        return abi.encodeWithSelector(Pausable.EnforcedPause.selector);
    }

    function _notOpen(uint256 leaseId, ILeaseEscrow.LeaseState state) internal pure returns (bytes memory) {
        return abi.encodeWithSelector(ILeaseEscrow.LeaseNotOpen.selector, leaseId, state);
    }

    function _panic(uint256 code) internal pure returns (bytes memory) {
        return abi.encodeWithSignature("Panic(uint256)", code);
    }

    function _state(uint256 leaseId) internal view returns (ILeaseEscrow.LeaseState) {
        return escrow.getLease(leaseId).state;
    }

    /// @dev tokens held == sum of the ledger over the accounts the unit tests use.
    function _assertSolvent() internal view {
        address[7] memory accounts = [tenant, tenant2, provider, provider2, treasury, stranger, admin];
        uint256 sum;
        for (uint256 i; i < accounts.length; ++i) {
            sum += escrow.available(accounts[i]) + escrow.reservedOf(accounts[i]) + escrow.getProvider(accounts[i]).stake;
        }
        assertEq(token.balanceOf(address(escrow)), sum, "escrow balance == available + reserved + stakes");
    }
}
